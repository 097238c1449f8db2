"""The intent state machine: which moves are allowed (`Move`), and the events each one announces.

`CREATED → VALIDATED → AUTHORIZED → SETTLED`, or `FAILED` (with a failure code) from any state that
is not terminal; a route that authorizes nothing (a top-up: the money arrives through the PSP) goes
`VALIDATED → SETTLED`. One move may pass through a state on its way (`Move.via`): an intent whose
money moves in one ledger round trip (the `transfer` step) goes `VALIDATED → AUTHORIZED → SETTLED`
in one statement, with both rows on its timeline and both events announced, in order. An intent
may also stay in its state while it moves on to another step (a PSP paid out: the authorized intent
now awaits `settle`) or records what a step reported (the payer's QR is ready): such a move is
guarded, timed and recorded like any other. `store.move_many` makes moves durably. See docs/saga.md.
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
    via: str | None = None
    """A state the intent passes through on the way to `to_state` (recorded and announced before it,
    by the same statement); None: straight there."""

    @property
    def stays(self) -> bool:
        """The intent keeps its state (it moves to another step, or records a step's news)."""
        return self.from_state == self.to_state

    def __post_init__(self) -> None:
        if self.via is not None:
            hops = ((self.from_state, self.via), (self.via, self.to_state))
            if any(to not in NEXT.get(start, frozenset()) for start, to in hops):
                raise IllegalMoveError(
                    f"{self.from_state} → {self.via} → {self.to_state} is not a way through the state machine"
                )
        elif self.stays:
            if self.from_state in TERMINAL or self.from_state not in NEXT:
                raise IllegalMoveError(f"a {self.from_state} intent cannot move")
        elif self.to_state not in NEXT.get(self.from_state, frozenset()):
            raise IllegalMoveError(f"{self.from_state} → {self.to_state} is not a move of the state machine")
        if (self.to_state == FAILED) != (self.failure_code is not None):
            raise IllegalMoveError("a move to FAILED needs a failure code, and only such a move has one")
        if self.to_state in TERMINAL and self.to_step is not None:
            raise IllegalMoveError("a terminal intent awaits no step")

    def hops(self) -> list[tuple[str, str]]:
        """(from, to) of each timeline row the move writes, in order: one, or two with `via`."""
        if self.via is None:
            return [(self.from_state, self.to_state)]
        return [(self.from_state, self.via), (self.via, self.to_state)]

    def events(self) -> list[messages.IntentStateChanged]:
        """The events the move announces on `pm:events`, in order: one per timeline row."""
        hops = self.hops()
        return [self._event(start, to, last=i == len(hops) - 1) for i, (start, to) in enumerate(hops)]

    def _event(self, start: str, to: str, *, last: bool) -> messages.IntentStateChanged:
        # A state is reached once, so its event has one id; a stay is named by what caused it.
        message_id = (
            f"{self.intent_id}:{self.to_step or 'stay'}:{self.cause_message_id}"
            if start == to
            else f"{self.intent_id}:state:{to}"
        )
        return messages.IntentStateChanged(
            intent_id=self.intent_id,
            message_id=message_id,
            produced_at=messages.now(),
            state=to,
            previous=start,
            failure_code=self.failure_code if last else None,
            reason=self.reason,
            awaits_payer=self.payment is not None and last,
        )
