"""Service keys in pm.service_key: create, rotate, deactivate, list, and the secrets to verify with."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from pm_shared.db import Conn
from pm_shared.keys import queries
from pm_shared.keys.crypto import Cipher

ALL_OPERATIONS = "*"
ACTIVE = "active"
INACTIVE = "inactive"


class KeyNotFoundError(LookupError):
    """No service key has this id."""

    def __init__(self, key_id: str) -> None:
        super().__init__(f"no service key {key_id!r}")
        self.key_id = key_id


class _PermissionsJson(msgspec.Struct, frozen=True, kw_only=True):
    operations: list[str]
    owners: list[str] | None = None
    admin: bool = False
    merchant: str | None = None


_decode_permissions = msgspec.json.Decoder(_PermissionsJson)


@dataclass(frozen=True)
class Permissions:
    """What a key may do: intent types (`*` = all), owners it may act for (None = any), admin routes;
    a merchant's key names its merchant, and may touch only that merchant's accounts and mini-apps."""

    operations: frozenset[str]
    owners: frozenset[str] | None
    admin: bool = False
    merchant: str | None = None

    def allows_operation(self, operation: str) -> bool:
        return ALL_OPERATIONS in self.operations or operation in self.operations

    def allows_owner(self, owner_id: str) -> bool:
        return self.owners is None or owner_id in self.owners

    def to_json(self) -> dict[str, object]:
        """The stored form: `{"operations": [...], "owners": [...] or null, "admin": bool}`, sorted,
        and `"merchant": <id>` on a merchant's key."""
        stored: dict[str, object] = {
            "operations": sorted(self.operations),
            "owners": sorted(self.owners) if self.owners is not None else None,
            "admin": self.admin,
        }
        if self.merchant is not None:
            stored["merchant"] = self.merchant
        return stored

    @classmethod
    def from_json(cls, value: object) -> Permissions:
        """From the stored form, as decoded JSON or JSON text; msgspec.ValidationError if malformed."""
        if isinstance(value, str | bytes):
            parsed = _decode_permissions.decode(value)
        else:
            parsed = msgspec.convert(value, _PermissionsJson)
        return cls(
            operations=frozenset(parsed.operations),
            owners=frozenset(parsed.owners) if parsed.owners is not None else None,
            admin=parsed.admin,
            merchant=parsed.merchant,
        )


@dataclass(frozen=True)
class ServiceKey:
    """A key as stored, without its secrets."""

    key_id: str
    status: str
    permissions: Permissions
    description: str
    created_at: datetime
    rotated_at: datetime | None
    deactivated_at: datetime | None
    last_used_at: datetime | None
    previous_valid_until: datetime | None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


def new_key_id() -> str:
    """`pk_` and 24 random lowercase hex digits."""
    return "pk_" + secrets.token_hex(12)


def new_secret() -> str:
    """256 random bits, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def _key(row: asyncpg.Record) -> ServiceKey:
    return ServiceKey(
        key_id=row["key_id"],
        status=row["status"],
        permissions=Permissions.from_json(row["permissions"]),
        description=row["description"],
        created_at=row["created_at"],
        rotated_at=row["rotated_at"],
        deactivated_at=row["deactivated_at"],
        last_used_at=row["last_used_at"],
        previous_valid_until=row["previous_valid_until"],
    )


async def create_key(
    conn: Conn, cipher: Cipher, *, permissions: Permissions, description: str = ""
) -> tuple[ServiceKey, str]:
    """A new active key and its secret, which is returned this once and stored only encrypted."""
    key_id = new_key_id()
    secret = new_secret()
    row = await conn.fetchrow(
        queries.INSERT_KEY,
        key_id,
        cipher.encrypt(secret, key_id=key_id),
        msgspec.json.encode(permissions.to_json()).decode(),
        description,
    )
    assert row is not None
    return _key(row), secret


async def rotate_key(conn: Conn, cipher: Cipher, key_id: str, *, grace_s: float) -> tuple[ServiceKey, str]:
    """A new secret for `key_id`; the previous one stays valid for `grace_s` seconds (0: not at all)."""
    secret = new_secret()
    row = await conn.fetchrow(
        queries.ROTATE_KEY, key_id, cipher.encrypt(secret, key_id=key_id), float(grace_s)
    )
    if row is None:
        raise KeyNotFoundError(key_id)
    return _key(row), secret


async def deactivate_key(conn: Conn, key_id: str) -> ServiceKey:
    """Mark `key_id` inactive: no request signed with it is accepted any more."""
    row = await conn.fetchrow(queries.DEACTIVATE_KEY, key_id)
    if row is None:
        raise KeyNotFoundError(key_id)
    return _key(row)


async def list_keys(conn: Conn) -> list[ServiceKey]:
    """Every key, oldest first."""
    return [_key(row) for row in await conn.fetch(queries.SELECT_KEYS)]


async def get_key(conn: Conn, key_id: str) -> ServiceKey | None:
    row = await conn.fetchrow(queries.SELECT_KEY, key_id)
    return _key(row) if row is not None else None


async def verification_secrets(
    conn: Conn, cipher: Cipher, key_id: str
) -> tuple[ServiceKey, list[str]] | None:
    """The key and the secrets a request signed with it may use: the current one, plus the previous one
    while its grace period lasts (by the database's clock). An inactive key has none; no key gives None.
    """
    found = await signing_secrets(conn, cipher, key_id)
    return None if found is None else (found.key, found.valid)


@dataclass(frozen=True)
class SigningSecrets:
    key: ServiceKey
    valid: list[str]
    """What a request may be signed with (none for an inactive key)."""
    retired: str | None
    """The previous secret once its grace period is over, kept to tell a client why it is refused."""


async def reactivate_key(conn: Conn, key_id: str) -> ServiceKey:
    """Mark `key_id` active again (a reactivated merchant): its current secret signs again."""
    row = await conn.fetchrow(queries.REACTIVATE_KEY, key_id)
    if row is None:
        raise KeyNotFoundError(key_id)
    return _key(row)


async def current_secret(conn: Conn, cipher: Cipher, key_id: str) -> str | None:
    """The secret that signs for `key_id` now, decrypted (for a replayed onboarding answer only)."""
    row = await conn.fetchrow(queries.SELECT_SECRETS, key_id)
    return None if row is None else cipher.decrypt(row["secret_encrypted"], key_id=key_id)


async def signing_secrets(conn: Conn, cipher: Cipher, key_id: str) -> SigningSecrets | None:
    row = await conn.fetchrow(queries.SELECT_SECRETS, key_id)
    if row is None:
        return None
    key = _key(row)
    if not key.active:
        return SigningSecrets(key, [], None)
    valid = [cipher.decrypt(row["secret_encrypted"], key_id=key_id)]
    if row["previous_encrypted"] is not None:
        valid.append(cipher.decrypt(row["previous_encrypted"], key_id=key_id))
    retired = row["retired_encrypted"]
    return SigningSecrets(key, valid, None if retired is None else cipher.decrypt(retired, key_id=key_id))


async def touch(conn: Conn, key_id: str) -> None:
    """Record that `key_id` was used now, at most once a minute (older stamps are left as they are)."""
    await conn.execute(queries.TOUCH_KEY, key_id)
