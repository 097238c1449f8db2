"""Merchants as stored (docs/api.md, "Merchants"): the row, its service key and its audit trail.

`onboard` is the one way a merchant comes to be: under a lock on its id, in one transaction, it
finds the merchant the same (admin key, Idempotency-Key) made before, or creates the key and the row
together, so a retry after a crash anywhere never makes a second key. Opening the merchant's ledger
accounts is the caller's next step (their ids are deterministic, so a retry opens the same ones).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pm_shared.db import Conn
from pm_shared.keys import store as keys
from pm_shared.keys.crypto import Cipher
from pm_shared.ledger import chart
from pm_shared.merchants import queries

ACTIVE = "ACTIVE"
INACTIVE = "INACTIVE"
MERCHANT_OPERATIONS = frozenset({"MINIAPP_CHARGE", "MINIAPP_CREDIT", "REFUND"})
"""What a merchant's key may create (the intent types come with the mini-app and refund issues)."""


class MerchantNotFoundError(LookupError):
    pass


class MerchantConflictError(Exception):
    """The merchant id is taken by another onboarding, or the Idempotency-Key was used with another
    request; `existing` is what is there."""

    def __init__(self, reason: str, existing: Merchant) -> None:
        super().__init__(reason)
        self.reason = reason
        self.existing = existing


@dataclass(frozen=True)
class Merchant:
    merchant_id: str
    name: str
    status: str
    currencies: tuple[str, ...]
    key_id: str
    created_by: str
    idempotency_key: str
    request_hash: bytes
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None
    accounts_state: str = "OPEN"
    """OPEN, CLOSING, CLOSED or REOPENING: where its ledger accounts are (pm_shared.merchants.closing)."""
    closings: int = 0
    """How many times its accounts were closed: the last close's number names its transfers."""

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


OWNER_KIND = "merchant"
"""The owner kind of a merchant's ledger accounts (`pm.tb_account_map`, account ids)."""


def account_specs(merchant: Merchant) -> list[chart.AccountSpec]:
    """The merchant's ledger accounts: code 2 (merchant) on the ledger of each of its currencies."""
    return [
        chart.AccountSpec(OWNER_KIND, merchant.merchant_id, currency, chart.Code.MERCHANT)
        for currency in merchant.currencies
    ]


@dataclass(frozen=True)
class Event:
    at: datetime
    action: str
    actor: str
    detail: dict[str, object]


def merchant_of(row: asyncpg.Record) -> Merchant:
    return Merchant(
        merchant_id=row["merchant_id"],
        name=row["name"],
        status=row["status"],
        currencies=tuple(row["currencies"]),
        key_id=row["key_id"],
        created_by=row["created_by"],
        idempotency_key=row["idempotency_key"],
        request_hash=bytes(row["request_hash"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        deactivated_at=row["deactivated_at"],
        accounts_state=row["accounts_state"],
        closings=row["closings"],
    )


@dataclass(frozen=True)
class Onboarding:
    """What an onboarding asks for, and who asks (the admin key) with which Idempotency-Key."""

    merchant_id: str
    name: str
    currencies: tuple[str, ...]
    created_by: str
    idempotency_key: str
    request_hash: bytes


async def onboard(conn: Conn, cipher: Cipher, wanted: Onboarding) -> tuple[Merchant, bool]:
    """The merchant `wanted` names, and whether this call created it (False: a replay).

    Raises MerchantConflictError when the Idempotency-Key was used for another request, or the
    merchant id belongs to another onboarding.
    """
    async with conn.transaction():
        await conn.execute(queries.LOCK_MERCHANT_ID, wanted.merchant_id)
        row = await conn.fetchrow(
            queries.SELECT_BY_IDEMPOTENCY_KEY, wanted.created_by, wanted.idempotency_key
        )
        if row is not None:
            found = merchant_of(row)
            if found.request_hash != wanted.request_hash:
                raise MerchantConflictError("idempotency_key_reused", found)
            return found, False
        row = await conn.fetchrow(queries.SELECT_MERCHANT, wanted.merchant_id)
        if row is not None:
            raise MerchantConflictError("merchant_exists", merchant_of(row))
        permissions = keys.Permissions(
            operations=MERCHANT_OPERATIONS, owners=None, admin=False, merchant=wanted.merchant_id
        )
        key, _ = await keys.create_key(
            conn, cipher, permissions=permissions, description=f"merchant {wanted.merchant_id}"
        )
        row = await conn.fetchrow(
            queries.INSERT_MERCHANT,
            wanted.merchant_id,
            wanted.name,
            list(wanted.currencies),
            key.key_id,
            wanted.created_by,
            wanted.idempotency_key,
            wanted.request_hash,
        )
        assert row is not None  # both conflicts were ruled out under the lock
        created = merchant_of(row)
        await record(conn, created.merchant_id, "created", wanted.created_by, {"keyId": key.key_id})
    return created, True


async def get(conn: Conn, merchant_id: str) -> Merchant:
    row = await conn.fetchrow(queries.SELECT_MERCHANT, merchant_id)
    if row is None:
        raise MerchantNotFoundError(merchant_id)
    return merchant_of(row)


async def list_all(conn: Conn) -> list[Merchant]:
    return [merchant_of(row) for row in await conn.fetch(queries.SELECT_MERCHANTS)]


async def events(conn: Conn, merchant_id: str) -> list[Event]:
    rows = await conn.fetch(queries.SELECT_EVENTS, merchant_id)
    return [Event(r["at"], r["action"], r["actor"], json.loads(r["detail"])) for r in rows]


async def set_status(conn: Conn, merchant_id: str, status: str, actor: str) -> Merchant:
    """Deactivate (its key too: refused from the next request on) or reactivate a merchant; repeating
    either changes nothing and records nothing."""
    async with conn.transaction():
        row = await conn.fetchrow(queries.SET_STATUS, merchant_id, status)
        if row is None:
            return await get(conn, merchant_id)  # already so (or no such merchant: NotFound)
        merchant = merchant_of(row)
        if status == INACTIVE:
            await keys.deactivate_key(conn, merchant.key_id)
        else:
            await keys.reactivate_key(conn, merchant.key_id)
        action = "deactivated" if status == INACTIVE else "reactivated"
        await record(conn, merchant_id, action, actor, {})
    return merchant


async def rotate_secret(
    conn: Conn, cipher: Cipher, merchant_id: str, actor: str, *, grace_s: float
) -> tuple[Merchant, keys.ServiceKey, str]:
    """A new secret for the merchant's key; the previous one signs for `grace_s` more seconds."""
    async with conn.transaction():
        merchant = await get(conn, merchant_id)
        key, secret = await keys.rotate_key(conn, cipher, merchant.key_id, grace_s=grace_s)
        await record(conn, merchant_id, "secret_rotated", actor, {"graceSeconds": grace_s})
    return merchant, key, secret


async def record(conn: Conn, merchant_id: str, action: str, actor: str, detail: dict[str, object]) -> None:
    """One entry of the merchant's audit trail."""
    await conn.execute(queries.INSERT_EVENT, merchant_id, action, actor, json.dumps(detail))
