"""Who is calling: the signed-request check (docs/api.md), and what the caller's key allows.

Order of checks: the four headers are present; the key exists and is active; the timestamp is
within ±300 s; the signature matches the current secret (or the previous one within its grace
period), compared in constant time; only then is the nonce recorded, so an unsigned request cannot
burn a nonce a real client is about to use. Every refusal has its own code and metric label.
"""

from __future__ import annotations

import asyncio
import logging
import re
import secrets as secrets_module
import time
from dataclasses import dataclass

from prometheus_client import Counter
from redis.asyncio import Redis

from pm_client import signing
from pm_client.api import ID_PATTERN
from pm_gateway.problems import ProblemError
from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, ServiceKey, signing_secrets, touch
from pm_shared.pipelined import Pipelined

log = logging.getLogger(__name__)

AUTH_FAILURES = Counter("pm_gateway_auth_failures_total", "Requests refused by authentication.", ["reason"])

TOUCH_EVERY_S = 60.0
_KEY_ID = re.compile(ID_PATTERN)
_UNIX_SECONDS = re.compile(r"^[0-9]{1,12}$")  # int() would also take "+1", " 1" or "١"


async def claim_nonce(calls: Pipelined, key: str, token: bytes) -> bool:
    """Mark a nonce used; True when this request is the first to use it.

    The key is set to a token of this request's own (`SET … NX GET`), so a SET that Redis applied but
    whose reply was lost — a reconnect, a Redis restart — and that the client sends again finds its
    own token and still counts as fresh; only another request's token makes a replay. The SETs of
    concurrent requests share a pipeline (`calls`).
    """
    previous = await calls(lambda pipe: pipe.set(key, token, nx=True, ex=signing.NONCE_TTL_S, get=True))
    return previous is None or previous == token


@dataclass(frozen=True)
class Caller:
    key_id: str
    permissions: Permissions


def refuse(status: int, code: str, detail: str) -> ProblemError:
    AUTH_FAILURES.labels(code).inc()
    return ProblemError(status, code, detail)


@dataclass
class _Cached:
    key: ServiceKey | None
    secrets: list[str]
    retired: str | None
    until: float


class Authenticator:
    def __init__(self, pool: Pool, redis: Redis, cipher: Cipher, *, cache_s: float) -> None:
        self.pool = pool
        self.redis = redis
        self.calls = Pipelined(redis)
        self.cipher = cipher
        self.cache_s = cache_s
        self._cache: dict[str, _Cached] = {}
        self._touched: dict[str, float] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def authenticate(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Caller:
        key_id = headers.get(signing.KEY_HEADER.lower())
        timestamp = headers.get(signing.TIMESTAMP_HEADER.lower())
        nonce = headers.get(signing.NONCE_HEADER.lower())
        signature = headers.get(signing.SIGNATURE_HEADER.lower())
        missing = [
            name
            for name, value in (
                (signing.KEY_HEADER, key_id),
                (signing.TIMESTAMP_HEADER, timestamp),
                (signing.NONCE_HEADER, nonce),
                (signing.SIGNATURE_HEADER, signature),
            )
            if not value
        ]
        if missing or key_id is None or timestamp is None or nonce is None or signature is None:
            raise refuse(401, "auth_missing_header", f"missing {', '.join(missing)}")
        if len(nonce) > 128 or not _KEY_ID.match(key_id):
            raise refuse(401, "auth_malformed_header", "X-PM-Key is not a key id, or X-PM-Nonce is too long")
        key, secrets, retired = await self._secrets(key_id)
        if key is None:
            raise refuse(401, "auth_unknown_key", "no such service key")
        if key.status != "active":
            raise refuse(401, "auth_inactive_key", "the service key is deactivated")
        if not _UNIX_SECONDS.match(timestamp):
            raise refuse(401, "auth_malformed_header", "X-PM-Timestamp must be unix seconds")
        sent_at = int(timestamp)
        if abs(time.time() - sent_at) > signing.MAX_SKEW_S:
            raise refuse(
                401, "auth_timestamp_skew", f"X-PM-Timestamp is more than {signing.MAX_SKEW_S} s off"
            )
        message = signing.string_to_sign(timestamp, nonce, method, target, body)
        if not signing.matches(secrets, signature, message):
            if retired is not None and signing.matches([retired], signature, message):
                raise refuse(401, "auth_expired_secret", "signed with a secret whose grace period is over")
            raise refuse(401, "auth_bad_signature", "the signature does not match the request")
        if not await claim_nonce(self.calls, f"pm:nonce:{key_id}:{nonce}", secrets_module.token_bytes(16)):
            raise refuse(401, "auth_replayed_nonce", "this nonce was used in the last 10 minutes")
        self._touch(key_id)
        return Caller(key_id, key.permissions)

    async def _secrets(self, key_id: str) -> tuple[ServiceKey | None, list[str], str | None]:
        now = time.monotonic()
        cached = self._cache.get(key_id)
        if cached is None or cached.until < now:
            async with self.pool.acquire() as conn:
                found = await signing_secrets(conn, self.cipher, key_id)
            if found is None:
                cached = _Cached(None, [], None, now + self.cache_s)
            else:
                cached = _Cached(found.key, found.valid, found.retired, now + self.cache_s)
            self._cache[key_id] = cached
            if len(self._cache) > 10_000:
                # Unknown ids are cached too (so a flood of them does not reach PostgreSQL), but bounded.
                self._cache = {k: v for k, v in self._cache.items() if v.until >= now}
        return cached.key, cached.secrets, cached.retired

    def forget(self, key_id: str) -> None:
        """Drop a cached key (this gateway changed it); others see the change within `cache_s`."""
        self._cache.pop(key_id, None)

    def _touch(self, key_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(key_id, -TOUCH_EVERY_S) < TOUCH_EVERY_S:
            return
        self._touched[key_id] = now
        task = asyncio.create_task(self._record_use(key_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _record_use(self, key_id: str) -> None:
        try:
            async with self.pool.acquire() as conn:
                await touch(conn, key_id)
        except Exception as exc:  # bookkeeping only: never fails a request
            log.warning("last_used_at of %s not recorded: %r", key_id, exc)


def require_operation(caller: Caller, operation: str) -> None:
    if operation == "ADJUSTMENT" and not caller.permissions.admin:
        raise refuse(403, "forbidden_operation", "ADJUSTMENT needs an admin key")
    if not caller.permissions.allows_operation(operation):
        raise refuse(403, "forbidden_operation", f"this key may not create {operation} intents")


def require_owner(caller: Caller, owner_id: str | None) -> None:
    """`owner_id` None (no user is a party): only a key for every owner may act."""
    if owner_id is None:
        if caller.permissions.owners is not None:
            raise refuse(403, "forbidden_owner", "this key may act only for its owners")
        return
    if not caller.permissions.allows_owner(owner_id):
        raise refuse(403, "forbidden_owner", f"this key may not act for owner {owner_id}")


def require_admin(caller: Caller) -> None:
    if not caller.permissions.admin:
        raise refuse(403, "forbidden_admin", "this endpoint needs an admin key")
