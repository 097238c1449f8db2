"""A merchant's webhook endpoints as stored (docs/webhooks-api.md): created with a new signing secret,
listed, read, rotated, disabled and enabled. The admin API (`pm_gateway.webhook_endpoints`) and
`pm webhooks` both come here; the sender (`pm_webhooks`) reads the rows.

The secret is 32 random bytes (`signing.new_secret`), stored as its `whsec_…` form encrypted with
the key cipher service-key secrets use (`Cipher.encrypt(signing.show(raw), key_id=endpoint_id)`: the
ciphertext stays on its row). Creation is idempotent by (actor, Idempotency-Key) and the request's
hash. A rotation keeps the replaced secret in `previous_secret_encrypted` until `previous_until`;
meanwhile both sign. Every change writes one `pm.webhook_event_log` row with its actor, in the same
transaction; a repeat that changes nothing (disabling a disabled endpoint) writes none.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from pm_shared.db import Conn
from pm_shared.keys.crypto import Cipher
from pm_shared.webhooks import queries, signing
from pm_shared.webhooks.events import EVENT_TYPES

ENABLED = "ENABLED"
DISABLED = "DISABLED"
_canonical = msgspec.json.Encoder(order="deterministic")


class EndpointNotFoundError(LookupError):
    pass


class MerchantNotFoundError(LookupError):
    pass


class IdempotencyConflictError(Exception):
    """The (actor, Idempotency-Key) pair made an endpoint for another request."""


@dataclass(frozen=True)
class Endpoint:
    """An endpoint as stored, without its secrets."""

    endpoint_id: str
    merchant_id: str
    url: str
    event_types: tuple[str, ...]
    status: str
    disabled_reason: str | None
    failing_since: datetime | None
    previous_secret_until: datetime | None
    """When the replaced secret stops signing, while a rotation's grace period lasts."""
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class LogEntry:
    action: str
    actor: str
    detail: str | None
    at: datetime


@dataclass(frozen=True)
class Creation:
    """What a creation asks for, and who asks (an admin key, `pm webhooks (<user>)`) with which key."""

    merchant_id: str
    url: str
    event_types: tuple[str, ...]
    actor: str
    idempotency_key: str

    def request_hash(self) -> bytes:
        """The same for the same merchant, URL and set of event types, whatever their order."""
        wanted = {"merchantId": self.merchant_id, "url": self.url, "eventTypes": self.event_types}
        return hashlib.sha256(_canonical.encode(wanted)).digest()


def event_types(wanted: Sequence[str]) -> tuple[str, ...]:
    """The event types in `EVENT_TYPES`' order, each once; ValueError for none or an unknown one."""
    unknown = sorted(set(wanted) - set(EVENT_TYPES))
    if unknown or not wanted:
        raise ValueError(f"event types are one or more of {', '.join(EVENT_TYPES)}; not {unknown}")
    return tuple(t for t in EVENT_TYPES if t in wanted)


def new_endpoint_id() -> str:
    """`ep_` and 24 random lower-case hex digits."""
    return "ep_" + secrets.token_hex(12)


def endpoint_of(row: asyncpg.Record) -> Endpoint:
    return Endpoint(
        endpoint_id=row["endpoint_id"],
        merchant_id=row["merchant_id"],
        url=row["url"],
        event_types=tuple(row["event_types"]),
        status=row["status"],
        disabled_reason=row["disabled_reason"],
        failing_since=row["failing_since"],
        previous_secret_until=row["previous_secret_until"],
        created_by=row["created_by"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _encrypt(cipher: Cipher, endpoint_id: str, raw: bytes) -> bytes:
    return cipher.encrypt(signing.show(raw), key_id=endpoint_id)


async def log(
    conn: Conn,
    endpoint_id: str,
    action: str,
    actor: str,
    detail: dict[str, object] | None = None,
    delivery_id: int | None = None,
) -> None:
    """One `pm.webhook_event_log` row: who did what to an endpoint (or to one of its deliveries)."""
    text = None if detail is None else json.dumps(detail, sort_keys=True)
    await conn.execute(queries.INSERT_LOG, endpoint_id, delivery_id, action, actor, text)


async def create(conn: Conn, cipher: Cipher, wanted: Creation) -> tuple[Endpoint, str | None, bool]:
    """The endpoint `wanted` names, its secret (`whsec_…`) and whether this call created it.

    A replay (the same actor, key and request) finds the same endpoint and shows its secret again
    while it is still the one made then; once rotated, the secret is None. Raises
    MerchantNotFoundError, or IdempotencyConflictError when the key made an endpoint for another
    request.
    """
    digest = wanted.request_hash()
    async with conn.transaction():
        if await conn.fetchval(queries.SELECT_MERCHANT, wanted.merchant_id) is None:
            raise MerchantNotFoundError(wanted.merchant_id)
        endpoint_id = new_endpoint_id()
        raw = signing.new_secret()
        row = await conn.fetchrow(
            queries.INSERT_ENDPOINT,
            endpoint_id,
            wanted.merchant_id,
            wanted.url,
            list(wanted.event_types),
            _encrypt(cipher, endpoint_id, raw),
            wanted.actor,
            wanted.idempotency_key,
            digest,
        )
        if row is not None:
            created = endpoint_of(row)
            detail: dict[str, object] = {"url": wanted.url, "eventTypes": list(wanted.event_types)}
            await log(conn, endpoint_id, "created", wanted.actor, detail)
            return created, signing.show(raw), True
        found = await conn.fetchrow(queries.SELECT_BY_IDEMPOTENCY_KEY, wanted.actor, wanted.idempotency_key)
        assert found is not None  # the insert met this very row
        if bytes(found["request_hash"]) != digest:
            raise IdempotencyConflictError(found["endpoint_id"])
        shown = None
        if not found["rotated"]:
            shown = cipher.decrypt(found["secret_encrypted"], key_id=found["endpoint_id"])
        return endpoint_of(found), shown, False


async def get(conn: Conn, endpoint_id: str) -> Endpoint:
    row = await conn.fetchrow(queries.SELECT_ENDPOINT, endpoint_id)
    if row is None:
        raise EndpointNotFoundError(endpoint_id)
    return endpoint_of(row)


async def of_merchant(conn: Conn, merchant_id: str) -> list[Endpoint]:
    """The merchant's endpoints, oldest first; MerchantNotFoundError for no such merchant."""
    rows = await conn.fetch(queries.SELECT_MERCHANT_ENDPOINTS, merchant_id)
    if not rows and await conn.fetchval(queries.SELECT_MERCHANT, merchant_id) is None:
        raise MerchantNotFoundError(merchant_id)
    return [endpoint_of(r) for r in rows]


async def history(conn: Conn, endpoint_id: str) -> list[LogEntry]:
    """The endpoint's own changes (the latest 100, oldest first); its deliveries' replays are not."""
    rows = await conn.fetch(queries.SELECT_ENDPOINT_LOG, endpoint_id)
    return [LogEntry(r["action"], r["actor"], r["detail"], r["at"]) for r in rows]


async def signing_secrets(conn: Conn, cipher: Cipher, endpoint_id: str) -> list[bytes]:
    """The raw secrets that sign for the endpoint now: the current one first, then the replaced one
    while its grace period lasts. EndpointNotFoundError for no such endpoint."""
    row = await conn.fetchrow(queries.SELECT_SECRETS, endpoint_id)
    if row is None:
        raise EndpointNotFoundError(endpoint_id)
    found = [row["secret_encrypted"], row["previous_encrypted"]]
    return [signing.parse(cipher.decrypt(blob, key_id=endpoint_id)) for blob in found if blob is not None]


async def rotate(
    conn: Conn, cipher: Cipher, endpoint_id: str, actor: str, *, grace_s: int
) -> tuple[Endpoint, str]:
    """A new secret (returned this once, `whsec_…`); the replaced one signs `grace_s` seconds more."""
    raw = signing.new_secret()
    async with conn.transaction():
        row = await conn.fetchrow(
            queries.ROTATE_SECRET, endpoint_id, _encrypt(cipher, endpoint_id, raw), float(grace_s)
        )
        if row is None:
            raise EndpointNotFoundError(endpoint_id)
        await log(conn, endpoint_id, "rotated", actor, {"graceSeconds": grace_s})
    return endpoint_of(row), signing.show(raw)


async def disable(conn: Conn, endpoint_id: str, actor: str, reason: str | None = None) -> Endpoint:
    """No delivery is attempted for it from now on (the sender fails what is pending). Disabling a
    disabled endpoint changes nothing (its first reason stays) and logs nothing."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.DISABLE_ENDPOINT, endpoint_id, reason or f"disabled by {actor}")
        if row is None:
            return await get(conn, endpoint_id)
        await log(conn, endpoint_id, "disabled", actor, None if reason is None else {"reason": reason})
    return endpoint_of(row)


async def enable(conn: Conn, endpoint_id: str, actor: str) -> Endpoint:
    """Deliver to it again, as a healthy endpoint (no `failing_since`, no disabled reason); its failed
    deliveries stay failed until replayed. Enabling an enabled endpoint changes nothing."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.ENABLE_ENDPOINT, endpoint_id)
        if row is None:
            return await get(conn, endpoint_id)
        await log(conn, endpoint_id, "enabled", actor)
    return endpoint_of(row)
