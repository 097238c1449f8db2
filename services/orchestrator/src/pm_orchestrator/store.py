"""The orchestrator's reads and writes of PostgreSQL: typed functions over the SQL in `queries`.

`move_many` is the saga's one write: a batch of moves in one statement, hence atomic — the guarded
UPDATE of `pm.intent` (it only applies while the intent is still in the state and step the caller
saw, so a duplicate or reordered message can never move an intent backwards or twice), its
`pm.intent_event` rows, the messages the moves cause in the outbox (an `IntentStateChanged` on
`pm:events` always among them) and the settlement projections. The caller publishes what it returns
once committed; the outbox relay publishes anything a crash left behind.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime

import asyncpg
import msgspec

from pm_orchestrator import queries as q
from pm_orchestrator.projections import Projections
from pm_orchestrator.states import IllegalMoveError, Move
from pm_shared.db import Conn
from pm_shared.intents.record import IntentRow
from pm_shared.messages import PspJob
from pm_shared.outbox import Outgoing
from pm_shared.streams.names import EVENTS
from pm_shared.streams.publisher import encode

_json = msgspec.json.Encoder()


async def load_intents(conn: Conn, ids: Sequence[str]) -> dict[str, IntentRow]:
    """The intents with these ids (canonical UUID text), by id; unknown ids are left out."""
    return {str(r["id"]): IntentRow.from_record(r) for r in await conn.fetch(q.SELECT_INTENTS, ids)}


async def wallets(conn: Conn, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (user id, currency) pairs have a wallet."""
    if not wanted:
        return set()
    pairs = sorted(wanted)
    found = await conn.fetch(q.SELECT_WALLETS, [p[0] for p in pairs], [p[1] for p in pairs])
    return {(r["owner_id"], r["currency"].strip()) for r in found}


async def stalled_intents(
    conn: Conn, before: datetime, limit: int, after: tuple[datetime, uuid.UUID]
) -> list[asyncpg.Record]:
    """Up to `limit` open intents not moved since `before`, oldest first, after the (updated_at, id)
    cursor `after`."""
    return await conn.fetch(q.SELECT_STALLED, before, limit, *after)


async def psp_phases(conn: Conn, keys: Sequence[str]) -> dict[str, str]:
    """How far the PSP attempts of these idempotency keys got (a key with no attempt is left out)."""
    return {r["idempotency_key"]: r["phase"] for r in await conn.fetch(q.SELECT_PSP_PHASES, keys)}


async def fence_dead_job(
    conn: Conn, job: PspJob, result_message_id: str, at: datetime
) -> asyncpg.Record | None:
    """Finish the attempt of a dead-lettered job FAILED if nothing can have reached the PSP (see
    queries.FENCE_DEAD_JOB); returns its row as it now stands."""
    return await conn.fetchrow(
        q.FENCE_DEAD_JOB,
        job.intent_id,
        job.psp,
        job.action,
        job.idempotency_key,
        job.message_id,
        job.amount,
        job.currency,
        result_message_id,
        at,
    )


async def insert_alert(
    conn: Conn, kind: str, intent_id: str | None, stream: str, entry_id: str, detail: object
) -> bool:
    """Raise a reconciliation alert for an operator; False when it was raised already."""
    added = await conn.fetchval(
        q.INSERT_ALERT, kind, intent_id, stream, entry_id, _json.encode(detail).decode()
    )
    return added is not None


class MoveRow(msgspec.Struct, frozen=True):
    """One move as MOVE_INTENTS reads it ($1; JSON fields travel as raw JSON)."""

    id: str
    from_state: str
    to_state: str
    from_step: str | None
    to_step: str | None
    failure_code: str | None
    reason: str
    cause: str | None
    fees: msgspec.Raw | None
    legs: msgspec.Raw | None
    channel: str | None
    route: str | None
    """The route's steps joined by commas."""
    payment: msgspec.Raw | None
    via: str | None
    """A state passed through on the way (a timeline row of its own, before `to_state`'s)."""

    @classmethod
    def of(cls, c: Move) -> MoveRow:
        return cls(
            id=c.intent_id,
            from_state=c.from_state,
            to_state=c.to_state,
            from_step=c.from_step,
            to_step=c.to_step,
            failure_code=c.failure_code,
            reason=c.reason,
            cause=c.cause_message_id,
            fees=_raw(c.fees),
            legs=_raw(c.legs),
            channel=c.channel,
            route=",".join(c.route) if c.route is not None else None,
            payment=_raw(c.payment),
            via=c.via,
        )


class OutboxRow(msgspec.Struct, frozen=True):
    """One outbox message as MOVE_INTENTS reads it ($2), written only if its `owner` intent moved."""

    owner: str
    stream: str
    intent_id: str
    message_id: str
    payload: str
    """The encoded message (JSON text); stored as its UTF-8 bytes."""

    @classmethod
    def of(cls, item: Outgoing) -> OutboxRow:
        message = item.message
        return cls(
            message.intent_id, item.stream, message.intent_id, message.message_id, encode(message).decode()
        )


def _raw(value: bytes | None) -> msgspec.Raw | None:
    return msgspec.Raw(value) if value is not None else None


async def move_many(
    conn: Conn,
    changes: Sequence[Move],
    outgoing: Mapping[str, Sequence[Outgoing]] | None = None,
    projections: Projections | None = None,
) -> tuple[set[str], list[Outgoing]]:
    """Apply `changes` (at most one per intent) in one statement: atomic on its own, or part of the
    caller's transaction if one is open.

    Returns the ids of the intents that moved and the messages to publish once committed: for each of
    them its state change events on `pm:events` (two for a move `via` a state, in order) followed by
    its `outgoing` messages (a message id the outbox already holds is not sent again). An intent no
    longer in its move's `from_state` / `from_step` is left alone (a stale duplicate): nothing of it
    is written — nor its `projections` rows (history and postings of settlements, keyed by intent id).
    """
    if not changes:
        return set(), []
    if len({c.intent_id for c in changes}) != len(changes):
        raise IllegalMoveError("one move per intent per statement")
    items: list[Outgoing] = []
    for change in changes:
        items.extend(Outgoing(EVENTS.name, event) for event in change.events())
        items.extend((outgoing or {}).get(change.intent_id, ()))
    found = projections or Projections()
    rows = await conn.fetch(
        q.MOVE_INTENTS,
        _json.encode([MoveRow.of(c) for c in changes]).decode(),
        _json.encode([OutboxRow.of(item) for item in items]).decode(),
        _json.encode(found.history).decode(),
        _json.encode(found.postings).decode(),
    )
    moved = {r["value"] for r in rows if r["kind"] == "moved"}
    sent = {r["value"] for r in rows if r["kind"] == "sent"}
    fresh: list[Outgoing] = []
    for item in items:
        if item.message.message_id in sent:
            sent.discard(item.message.message_id)
            fresh.append(item)
    return moved, fresh


async def move(conn: Conn, change: Move, outgoing: Sequence[Outgoing] = ()) -> list[Outgoing] | None:
    """Apply one `change` (see `move_many`).

    Returns the messages to publish after commit (the state change event first), or None when the
    intent was no longer in `change.from_state` — then nothing was written, and the caller treats
    its message as a stale duplicate.
    """
    moved, fresh = await move_many(conn, [change], {change.intent_id: outgoing})
    return fresh if moved else None
