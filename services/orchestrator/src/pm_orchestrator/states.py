"""The intent state machine (DESIGN §7): which moves are allowed, and making one durably.

`CREATED → VALIDATED → AUTHORIZED → SETTLED`, or `FAILED` (with a failure code) from any state that
is not terminal. A move is one transaction: the guarded UPDATE of `pm.intent` (it only applies if the
intent is still in the state the caller saw, so a duplicate or reordered message can never move an
intent backwards or twice), its `pm.intent_event` row, and the messages it causes in the outbox — an
`IntentStateChanged` on `pm:events` always among them. The caller publishes what `move` returns
after the transaction commits; the relay publishes anything a crash left behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pm_orchestrator import queries as q
from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.outbox import Outgoing, enqueue
from pm_shared.streams.names import EVENTS

CREATED, VALIDATED, AUTHORIZED, SETTLED, FAILED = "CREATED", "VALIDATED", "AUTHORIZED", "SETTLED", "FAILED"
TERMINAL = frozenset({SETTLED, FAILED})
NEXT: dict[str, frozenset[str]] = {
    CREATED: frozenset({VALIDATED, FAILED}),
    VALIDATED: frozenset({AUTHORIZED, FAILED}),
    AUTHORIZED: frozenset({SETTLED, FAILED}),
    SETTLED: frozenset(),
    FAILED: frozenset(),
}


class IllegalMoveError(ValueError):
    """A move the state machine does not have (a bug in the caller, not a stale message)."""


@dataclass(frozen=True)
class Move:
    intent_id: str
    from_state: str
    to_state: str
    reason: str
    cause_message_id: str | None = None
    failure_code: str | None = None

    def __post_init__(self) -> None:
        if self.to_state not in NEXT.get(self.from_state, frozenset()):
            raise IllegalMoveError(f"{self.from_state} → {self.to_state} is not a move of the state machine")
        if (self.to_state == FAILED) != (self.failure_code is not None):
            raise IllegalMoveError("a move to FAILED needs a failure code, and only such a move has one")


async def move(conn: Conn, change: Move, outgoing: Sequence[Outgoing] = ()) -> list[Outgoing] | None:
    """Apply `change` in the caller's open transaction.

    Returns the messages to publish after commit (the state change event first), or None when the
    intent was no longer in `change.from_state` — then nothing was written, and the caller treats
    its message as a stale duplicate.
    """
    if not conn.is_in_transaction():
        raise RuntimeError("move() runs inside the caller's transaction")
    moved = await conn.fetchval(
        q.MOVE_INTENT,
        change.intent_id,
        change.from_state,
        change.to_state,
        change.failure_code,
        change.reason,
        change.cause_message_id,
    )
    if not moved:
        return None
    event = messages.IntentStateChanged(
        intent_id=change.intent_id,
        message_id=f"{change.intent_id}:state:{change.to_state}",
        produced_at=messages.now(),
        state=change.to_state,
        previous=change.from_state,
        failure_code=change.failure_code,
        reason=change.reason,
    )
    return await enqueue(conn, [Outgoing(EVENTS.name, event), *outgoing])
