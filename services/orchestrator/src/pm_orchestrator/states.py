"""The intent state machine: which moves are allowed (`Move`), and the event each one announces.

`CREATED → VALIDATED → AUTHORIZED → SETTLED`, or `FAILED` (with a failure code) from any state that
is not terminal; a route that authorizes nothing (a top-up: the money arrives through the PSP) goes
`VALIDATED → SETTLED`. An intent may also stay in its state while it moves on to another step (a PSP
paid out: the authorized intent now awaits `settle`) or records what a step reported (the payer's QR
is ready): such a move is guarded, timed and recorded like any other. `store.move_many` makes moves
durably. See docs/saga.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from pm_client.api import TERMINAL_STATES
from pm_shared import messages

CREATED, VALIDATED, AUTHORIZED, SETTLED, FAILED = "CREATED", "VALIDATED", "AUTHORIZED", "SETTLED", "FAILED"
TERMINAL: frozenset[str] = TERMINAL_STATES
"""The states no move leaves: the API's one terminal-state set."""
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
