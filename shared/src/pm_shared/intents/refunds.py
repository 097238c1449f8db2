"""The refund intake (docs/refunds.md): a REFUND intent gives back all or part of a settled original.

Two kinds of original are refundable:

- a MINIAPP_CHARGE, refunded by its merchant: merchant account -> the payer's wallet (the gateway's
  `POST /v1/intents`, pm_gateway.refunds);
- a PROMPTPAY_WITHDRAWAL a receiving bank sent back: from the payee it was paid to (its PromptPay or
  Thai QR party exactly as the withdrawal stored it, so its money comes out of IPPS clearing) -> the
  payer's wallet (the IPPS adapter, on a refund notification).

`create` writes the refund in one transaction that first locks the original's `pm.intent` row, so
concurrent refunds of one original are taken one at a time and each adds up the ones before it: their
sum (those that have not failed) never exceeds the original. It needs READ COMMITTED (PostgreSQL's
default), where each statement after the lock sees what the refunds before it committed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from pm_shared.db import Conn
from pm_shared.intents import queries as q

__all__ = ["Created", "NewRefund", "Original", "RefundRefusedError", "check", "create", "refunded"]

REFUNDABLE = ("MINIAPP_CHARGE", "PROMPTPAY_WITHDRAWAL")
"""The intent types a REFUND may give back."""


class RefundRefusedError(Exception):
    """The refund cannot be made; nothing was written. `status` and `code` are the API's problem."""

    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail


class NewRefund(msgspec.Struct, frozen=True, kw_only=True):
    """A refund to write: its id, who asks (key and Idempotency-Key, and the request's hash), and
    the `pm.intent` columns it takes. Parties are as `pm.intent.source`/`target` store them."""

    id: uuid.UUID
    key_id: str
    idempotency_key: str
    request_hash: bytes
    amount: int
    currency: str
    source: dict[str, Any]
    """The payer of the refund: `{"kind": "merchant", "id": …}`, or a withdrawal's payee as stored."""
    target: dict[str, Any]
    """The original's payer: `{"kind": "user", "id": …}`."""
    original_intent_id: uuid.UUID
    miniapp_id: str | None = None
    """Ignored: a refund takes its original's mini-app."""
    comment: str | None = None
    from_name: str | None = None
    to_name: str | None = None
    metadata: dict[str, str] = {}


class Created(msgspec.Struct, frozen=True):
    """The refund intent, new or (`replayed`) the one this (key, Idempotency-Key) made before; its
    `request_hash` is the stored one, so a caller can tell a replay from a key reused (409)."""

    intent_id: uuid.UUID
    created_at: datetime
    replayed: bool
    request_hash: bytes


@dataclass(frozen=True)
class Original:
    """What the checks read of the original intent."""

    id: uuid.UUID
    type: str
    state: str
    amount: int
    currency: str
    source: dict[str, Any]
    target: dict[str, Any]
    miniapp_id: str | None = None


_object = msgspec.json.Decoder(dict[str, Any])
_row = msgspec.json.Encoder()


def _json(value: Any) -> dict[str, Any]:
    # asyncpg returns jsonb as text unless a codec is set; accept both.
    return _object.decode(value.encode() if isinstance(value, str) else bytes(value))


def _original(row: asyncpg.Record) -> Original:
    return Original(
        id=row["id"],
        type=row["type"],
        state=row["state"],
        amount=row["amount"],
        currency=row["currency"].strip(),
        source=_json(row["source"]),
        target=_json(row["target"]),
        miniapp_id=row["miniapp_id"],
    )


def _party(side: dict[str, Any]) -> tuple[Any, Any]:
    return side.get("kind"), side.get("id")


def mirrored_parties(original: Original) -> tuple[tuple[Any, Any], tuple[Any, Any]]:
    """The (kind, id) a refund of `original` must be paid from and paid to: back from whom the
    original paid, to the original's payer."""
    payer = ("user", original.source.get("id"))
    if original.type == "MINIAPP_CHARGE":
        return ("merchant", original.target.get("id")), payer
    # A payout sent back comes from the payee it was paid to (a PromptPay proxy or a scanned QR): its
    # money arrives in the IPPS clearing account, as the payout's left from it.
    return _party(original.target), payer


def check(original: Original, new: NewRefund, refunded: int) -> None:
    """Raise the RefundRefusedError a refund of `original` deserves, when `refunded` (the sum of its
    refunds that have not failed) is already given back; return when it may be made."""
    if original.type not in REFUNDABLE:
        raise RefundRefusedError(
            422, "original_not_refundable", f"a {original.type} intent cannot be refunded"
        )
    source, target = mirrored_parties(original)
    mirrored = _party(new.source) == source and _party(new.target) == target
    if original.type == "PROMPTPAY_WITHDRAWAL":
        mirrored = mirrored and new.source == original.target  # the very payee, proxy and all
    if not mirrored or original.source.get("kind") != "user":
        raise RefundRefusedError(
            422,
            "refund_parties_mismatch",
            "a refund goes back from whom the original paid to the original's payer",
        )
    if new.currency != original.currency:
        raise RefundRefusedError(
            422,
            "refund_currency_mismatch",
            f"the original is in {original.currency}, the refund in {new.currency}",
        )
    if original.state != "SETTLED":
        raise RefundRefusedError(
            409, "original_not_settled", f"the original is {original.state}; only a settled one is refunded"
        )
    left = original.amount - refunded
    if new.amount > left:
        raise RefundRefusedError(
            409,
            "refund_exceeds_original",
            f"{left} {original.currency} of the original's {original.amount} is left to refund, "
            f"not {new.amount}",
        )


def _insert_row(new: NewRefund, original: Original) -> str:
    return _row.encode(
        {
            "id": str(new.id),
            "key_id": new.key_id,
            "idempotency_key": new.idempotency_key,
            "request_hash": "\\x" + new.request_hash.hex(),  # PostgreSQL's hex form of bytea
            "amount": new.amount,
            "currency": new.currency,
            "source": new.source,
            "target": new.target,
            "from_name": new.from_name,
            "to_name": new.to_name,
            "comment": new.comment,
            "metadata": new.metadata,
            "miniapp_id": original.miniapp_id,
            "original_intent_id": str(original.id),
        }
    ).decode()


async def _existing(conn: Conn, new: NewRefund) -> Created | None:
    row = await conn.fetchrow(q.REFUND_BY_IDEMPOTENCY_KEY, new.key_id, new.idempotency_key)
    if row is None:
        return None
    return Created(row["id"], row["created_at"], True, bytes(row["request_hash"]))


async def create(conn: Conn, new: NewRefund, *, stream: str, message_id: str, payload: bytes) -> Created:
    """Write the refund `new` (CREATED, its first timeline entry, its outbox message `payload` for
    `stream`), or find the one its (key, Idempotency-Key) made; raise RefundRefusedError otherwise.

    The caller publishes the message after this returns a new intent (or the outbox relay does).
    """
    async with conn.transaction():
        row = await conn.fetchrow(q.LOCK_ORIGINAL, new.original_intent_id)
        if row is None:
            raise RefundRefusedError(404, "original_not_found", "no such intent to refund")
        # A replay answers as the first request did, whatever has been refunded since.
        made = await _existing(conn, new)
        if made is not None:
            return made
        original = _original(row)
        check(original, new, await refunded(conn, original.id))
        inserted = await conn.fetchrow(
            q.INSERT_REFUND, _insert_row(new, original), stream, message_id, payload
        )
        if inserted is None:
            # The (key, Idempotency-Key) was taken since: by a twin refunding another original
            # (this one's lock does not hold that one back). Its intent is the answer.
            made = await _existing(conn, new)
            assert made is not None
            return made
        return Created(inserted["id"], inserted["created_at"], False, new.request_hash)


async def refunded(conn: Conn, original_intent_id: uuid.UUID) -> int:
    """The sum of the original's refunds that have not failed (settled or still under way)."""
    total = await conn.fetchval(q.REFUNDED, original_intent_id)
    return int(total)
