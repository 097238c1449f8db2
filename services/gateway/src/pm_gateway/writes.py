"""How intake writes a new intent: the `pm.intent` row it makes (`NewIntent`), what a write step
answers (`Written`), and the write step of every type but REFUND (`insert`; a REFUND's is
`pm_gateway.refunds.write`). `pm_gateway.intents.submit` picks the step; both steps write the intent,
its first timeline entry and its outbox message in one transaction, or find the intent the same
(key, Idempotency-Key) made.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import NamedTuple

import asyncpg
import msgspec

from pm_client.api import CreateIntent, Exchange, Party
from pm_gateway import queries as q
from pm_gateway.auth import Caller
from pm_gateway.problems import ProblemError
from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.streams.names import INTENTS


class NewIntent(msgspec.Struct, frozen=True):
    """The `pm.intent` columns intake writes, named as the table names them (INSERT_INTENTS' $1)."""

    id: uuid.UUID
    key_id: str
    idempotency_key: str
    request_hash: str
    """sha256 of the canonical request, in PostgreSQL's hex form for bytea (`\\x…`)."""
    type: str
    amount: int
    currency: str
    source: Party
    target: Party
    from_name: str | None
    to_name: str | None
    comment: str | None
    requires_monitoring: bool
    metadata: dict[str, str]
    miniapp_id: str | None
    exchange: Exchange | None
    original_intent_id: uuid.UUID | None = None
    """A REFUND's original (written by its own step, `pm_gateway.refunds.write`)."""

    @classmethod
    def of(
        cls,
        intent_id: uuid.UUID,
        caller: Caller,
        key: str,
        request_hash: bytes,
        r: CreateIntent,
        exchange: Exchange | None = None,
    ) -> NewIntent:
        return cls(
            id=intent_id,
            key_id=caller.key_id,
            idempotency_key=key,
            request_hash="\\x" + request_hash.hex(),
            type=r.type,
            amount=r.amount,
            currency=r.currency,
            source=r.from_,
            target=r.to,
            from_name=r.from_name,
            to_name=r.to_name,
            comment=r.comment,
            requires_monitoring=r.requires_monitoring,
            metadata=r.metadata,
            miniapp_id=r.miniapp_id,
            exchange=exchange,
            original_intent_id=r.original_intent_id,
        )

    @property
    def hash_bytes(self) -> bytes:
        """`request_hash` as bytes."""
        return bytes.fromhex(self.request_hash.removeprefix("\\x"))


_row = msgspec.json.Encoder()


def row_json(intent: NewIntent) -> str:
    """`intent` as the JSON object INSERT_INTENTS reads into a `pm.intent` row."""
    return _row.encode(intent).decode()


class Written(NamedTuple):
    """What a write step made of a NewIntent: the new intent (`created_at` set), or the one its
    (key, Idempotency-Key) made before (`created_at` None), with that one's request hash."""

    intent_id: uuid.UUID
    created_at: datetime | None
    request_hash: bytes


Write = Callable[[Conn, NewIntent, messages.IntentSubmitted, bytes], Awaitable[Written]]
"""Writes the intent, its first timeline entry and its outbox message (`payload`) in one transaction,
or finds the intent its (key, Idempotency-Key) made; refuses with a ProblemError, writing nothing."""


async def insert(conn: Conn, intent: NewIntent, message: messages.IntentSubmitted, payload: bytes) -> Written:
    """The write step of every type but REFUND: one statement (INSERT_INTENTS, for this one intent). A
    new intent costs that statement; a replay (or a concurrent twin) finds the row already there."""
    try:
        row = await conn.fetchrow(
            q.INSERT_INTENTS, [row_json(intent)], INTENTS.name, [message.message_id], [payload]
        )
    except asyncpg.UniqueViolationError:
        # Only an FX_EXCHANGE names its id (its quote's): another request made that intent already.
        raise ProblemError(409, "quote_used", "this quote was used by another request") from None
    if row is not None:
        return Written(intent.id, row["created_at"], intent.hash_bytes)
    existing = await conn.fetchrow(q.INTENT_BY_IDEMPOTENCY_KEY, intent.key_id, intent.idempotency_key)
    assert existing is not None
    return Written(existing["id"], None, bytes(existing["request_hash"]))
