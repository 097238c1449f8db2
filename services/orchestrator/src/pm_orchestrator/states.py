"""The intent state machine (DESIGN §7): which moves are allowed, and making one durably.

`CREATED → VALIDATED → AUTHORIZED → SETTLED`, or `FAILED` (with a failure code) from any state that
is not terminal; a route that authorizes nothing (a top-up: the money arrives through the PSP) goes
`VALIDATED → SETTLED`. An intent may also stay in its state while it moves on to another step (a PSP
paid out: the authorized intent now awaits `settle`) or records what a step reported (the payer's QR
is ready): such a move is guarded, timed and recorded like any other.

A batch of moves is one SQL statement, hence atomic: the guarded UPDATE of
`pm.intent` (it only applies if the intent is still in the state and step the caller saw, so a
duplicate or reordered message can never move an intent backwards or twice), its `pm.intent_event`
rows, the messages the moves cause in the outbox — an `IntentStateChanged` on `pm:events` always
among them — and the settlement projections. The caller publishes what `move_many` returns once it
is committed; the relay publishes anything a crash left behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pm_orchestrator import queries as q
from pm_orchestrator.projections import Projections
from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.outbox import Outgoing
from pm_shared.streams.names import EVENTS
from pm_shared.streams.publisher import encode

CREATED, VALIDATED, AUTHORIZED, SETTLED, FAILED = "CREATED", "VALIDATED", "AUTHORIZED", "SETTLED", "FAILED"
TERMINAL = frozenset({SETTLED, FAILED})
NEXT: dict[str, frozenset[str]] = {
    CREATED: frozenset({VALIDATED, FAILED}),
    VALIDATED: frozenset({AUTHORIZED, SETTLED, FAILED}),
    AUTHORIZED: frozenset({SETTLED, FAILED}),
    SETTLED: frozenset(),
    FAILED: frozenset(),
}


class IllegalMoveError(ValueError):
    """A move the state machine does not have (a bug in the caller, not a stale message)."""


@dataclass(frozen=True)
class Move:
    """One guarded move, and what the intent row takes with it (None keeps the stored value)."""

    intent_id: str
    from_state: str
    to_state: str
    reason: str
    cause_message_id: str | None = None
    failure_code: str | None = None
    from_step: str | None = None
    """The step the intent must be awaiting for the move to apply (the guard checks state and step)."""
    to_step: str | None = None
    """The step it awaits afterwards (None: none)."""
    fees: bytes | None = None
    """JSON for `pm.intent.fees`."""
    legs: bytes | None = None
    """JSON for `pm.intent.legs`."""
    channel: str | None = None
    route: tuple[str, ...] | None = None
    payment: bytes | None = None
    """JSON for `pm.intent.payment` (what the payer is shown)."""

    @property
    def stays(self) -> bool:
        """The intent keeps its state (it moves to another step, or records a step's news)."""
        return self.from_state == self.to_state

    def __post_init__(self) -> None:
        if self.stays:
            if self.from_state in TERMINAL or self.from_state not in NEXT:
                raise IllegalMoveError(f"a {self.from_state} intent cannot move")
        elif self.to_state not in NEXT.get(self.from_state, frozenset()):
            raise IllegalMoveError(f"{self.from_state} → {self.to_state} is not a move of the state machine")
        if (self.to_state == FAILED) != (self.failure_code is not None):
            raise IllegalMoveError("a move to FAILED needs a failure code, and only such a move has one")
        if self.to_state in TERMINAL and self.to_step is not None:
            raise IllegalMoveError("a terminal intent awaits no step")

    def event(self) -> messages.IntentStateChanged:
        # A state is reached once, so its event has one id; a stay is named by what caused it.
        message_id = (
            f"{self.intent_id}:{self.to_step or 'stay'}:{self.cause_message_id}"
            if self.stays
            else f"{self.intent_id}:state:{self.to_state}"
        )
        return messages.IntentStateChanged(
            intent_id=self.intent_id,
            message_id=message_id,
            produced_at=messages.now(),
            state=self.to_state,
            previous=self.from_state,
            failure_code=self.failure_code,
            reason=self.reason,
            awaits_payer=self.payment is not None,
        )


def _text(value: bytes | None) -> str | None:
    return value.decode() if value is not None else None


async def move_many(
    conn: Conn,
    changes: Sequence[Move],
    outgoing: Mapping[str, Sequence[Outgoing]] | None = None,
    projections: Projections | None = None,
) -> tuple[set[str], list[Outgoing]]:
    """Apply `changes` (at most one per intent) in one statement: atomic on its own, or part of the
    caller's transaction if one is open.

    Returns the ids of the intents that moved and the messages to publish once committed: for each of
    them its state change event on `pm:events` followed by its `outgoing` messages (a message id the
    outbox already holds is not sent again). An intent no longer in its move's `from_state` /
    `from_step` is left alone (a stale duplicate): nothing of it is written — nor its `projections`
    rows (history and postings of settlements, keyed by intent id).
    """
    if not changes:
        return set(), []
    if len({c.intent_id for c in changes}) != len(changes):
        raise IllegalMoveError("one move per intent per statement")
    items: list[Outgoing] = []
    for change in changes:
        items.append(Outgoing(EVENTS.name, change.event()))
        items.extend((outgoing or {}).get(change.intent_id, ()))
    found = projections or Projections()
    rows = await conn.fetch(
        q.MOVE_INTENTS,
        [c.intent_id for c in changes],
        [c.from_state for c in changes],
        [c.to_state for c in changes],
        [c.from_step for c in changes],
        [c.to_step for c in changes],
        [c.failure_code for c in changes],
        [c.reason for c in changes],
        [c.cause_message_id for c in changes],
        [_text(c.fees) for c in changes],
        [_text(c.legs) for c in changes],
        [c.channel for c in changes],
        [",".join(c.route) if c.route is not None else None for c in changes],
        [item.message.intent_id for item in items],
        [item.stream for item in items],
        [item.message.intent_id for item in items],
        [item.message.message_id for item in items],
        [encode(item.message) for item in items],
        *found.history_columns(),
        *found.posting_columns(),
        [_text(c.payment) for c in changes],
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
