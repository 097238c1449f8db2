"""Deciding what one message does to one intent: the move, the messages it sends, what to undo.

Planning reads the intent as loaded for the batch and never writes; `saga` applies the plans of a
batch in one transaction. A message that no longer fits the intent (it is in another state, or
awaits another step) plans nothing: it is a stale duplicate or arrived out of order.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field

import msgspec

from pm_orchestrator import failures, legs
from pm_orchestrator.record import IntentRow, StoredFee
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, TERMINAL, VALIDATED, Move
from pm_orchestrator.steps import Context, Draft, StepFailed, StepRegistry
from pm_shared.messages import LedgerCommand, LedgerResult, now
from pm_shared.outbox import Outgoing
from pm_shared.streams.names import LEDGER_COMMANDS

VOID_STEP = "void"

_encode = msgspec.json.encode


@dataclass
class Plan:
    intent: IntentRow
    move: Move
    outgoing: list[Outgoing] = field(default_factory=list)
    settled_legs: list[legs.Leg] | None = None
    """For a move to SETTLED: the legs posted, for the projections."""
    release_limits_of: str | None = None
    """The user whose limit reservation this failure gives back (done before the move commits)."""


@dataclass(frozen=True)
class Planner:
    registry: StepRegistry
    pending_timeout_s: int
    already_failed_grace_s: float
    """How long an answer `ID_ALREADY_FAILED` (to a command sent again) is ignored while the first
    answer, which carries the reason, may still come — e.g. reclaimed from a killed orchestrator."""

    def _command(
        self, intent: IntentRow, step: str, all_legs: list[legs.Leg], message_id: str
    ) -> LedgerCommand:
        transfers = self.registry.ledger[step].build(intent, all_legs, self.pending_timeout_s)
        return LedgerCommand(
            intent_id=intent.id, message_id=message_id, produced_at=now(), step=step, transfers=transfers
        )

    async def intake(self, ctx: Context, intent: IntentRow, cause: str | None) -> Plan | None:
        """Take a CREATED intent through its local steps and send its first ledger step."""
        if intent.state != CREATED:
            return None
        route = ctx.rules.routes.get(intent.type)
        if route is None:
            return _fail(
                intent, failures.ROUTE_UNAVAILABLE, f"no enabled payment route for {intent.type}", cause
            )
        missing = self.registry.missing(route.steps)
        if missing:
            return _fail(
                intent,
                failures.ROUTE_UNAVAILABLE,
                f"route {route.operation_type}/{route.channel} needs step(s) {', '.join(missing)}, "
                "which this build does not have",
                cause,
            )
        draft = Draft(intent)
        passed: list[str] = []
        for name in route.steps:
            local = self.registry.local.get(name)
            if local is not None:
                try:
                    await local(ctx, draft)
                except StepFailed as exc:
                    plan = _fail(intent, exc.code, exc.reason, cause)
                    plan.release_limits_of = draft.reserved_for
                    return plan
                passed.append(name)
                continue
            priced = dataclasses.replace(
                intent, fees=tuple(draft.fees), channel=route.channel, route=route.steps
            )
            try:
                all_legs = legs.legs(priced)
            except legs.LegError as exc:
                plan = _fail(intent, failures.ROUTE_UNAVAILABLE, str(exc), cause)
                plan.release_limits_of = draft.reserved_for
                return plan
            command = self._command(priced, name, all_legs, f"{intent.id}:{name}")
            done = ", ".join(passed) if passed else "nothing to check"
            return Plan(
                intent,
                Move(
                    intent.id,
                    CREATED,
                    VALIDATED,
                    f"{done}; {name} sent to the ledger",
                    cause_message_id=cause,
                    to_step=name,
                    fees=_encode(draft.fees),
                    legs=_encode(legs.display(intent.id, all_legs, "requested")),
                    channel=route.channel,
                    route=route.steps,
                ),
                [Outgoing(LEDGER_COMMANDS.name, command)],
            )
        return _fail(
            intent, failures.ROUTE_UNAVAILABLE, f"route {route.operation_type} moves no money", cause
        )

    def result(self, intent: IntentRow, result: LedgerResult) -> Plan | None:
        """Apply the ledger's answer to the step the intent awaits."""
        step = self.registry.ledger.get(result.step)
        if step is None or intent.state in TERMINAL or intent.step != result.step:
            return None
        all_legs = legs.legs(intent)
        cause = result.message_id
        if result.ok:
            route = intent.route or ()
            following = route[route.index(step.name) + 1 :] if step.name in route else ()
            if not following:
                return Plan(
                    intent,
                    Move(
                        intent.id,
                        intent.state,
                        step.reaches,
                        f"{step.name} applied by the ledger",
                        cause_message_id=cause,
                        from_step=step.name,
                        legs=_encode(
                            legs.display(
                                intent.id, all_legs, "posted" if step.reaches == SETTLED else "pending"
                            )
                        ),
                    ),
                    settled_legs=all_legs if step.reaches == SETTLED else None,
                )
            upcoming = following[0]
            if upcoming not in self.registry.ledger:
                raise RuntimeError(
                    f"step {upcoming!r} after {step.name!r} is not a ledger step of this build"
                )
            command = self._command(intent, upcoming, all_legs, f"{intent.id}:{upcoming}")
            return Plan(
                intent,
                Move(
                    intent.id,
                    intent.state,
                    step.reaches,
                    f"{step.name} applied by the ledger; {upcoming} sent",
                    cause_message_id=cause,
                    from_step=step.name,
                    to_step=upcoming,
                    legs=_encode(legs.display(intent.id, all_legs, "pending")),
                ),
                [Outgoing(LEDGER_COMMANDS.name, command)],
            )
        failure = failures.from_ledger(result)
        if failures.cause_status(result) == failures.ID_ALREADY_FAILED:
            # A repeat of a command the ledger refused before: that first answer carries the real
            # reason and is on its way, unless it was lost long ago.
            if time.time() - intent.updated_at.timestamp() < self.already_failed_grace_s:
                return None
            failure = failures.Failure(
                failures.LEDGER_REJECTED, f"{result.step}: refused earlier by the ledger"
            )
        outgoing: list[Outgoing] = []
        shown = "failed"
        if intent.state == AUTHORIZED:
            # The authorization holds money: give it back. Each pending leg is voided on its own.
            void = LedgerCommand(
                intent_id=intent.id,
                message_id=f"{intent.id}:{VOID_STEP}",
                produced_at=now(),
                step=VOID_STEP,
                transfers=legs.void(intent, all_legs),
            )
            outgoing.append(Outgoing(LEDGER_COMMANDS.name, void))
            shown = "voided"
        plan = Plan(
            intent,
            Move(
                intent.id,
                intent.state,
                FAILED,
                failure.reason,
                cause_message_id=cause,
                failure_code=failure.code,
                from_step=step.name,
                legs=_encode(legs.display(intent.id, all_legs, shown)),
            ),
            outgoing,
        )
        if "reserve_limits" in (intent.route or ()) and intent.source.kind == "user":
            plan.release_limits_of = intent.source.id
        return plan

    def resend(self, intent: IntentRow) -> LedgerCommand | None:
        """The command of the ledger step a stalled intent awaits, under a new message id (the same
        transfers: the ledger answers those already applied with EXISTS)."""
        if intent.state not in (VALIDATED, AUTHORIZED) or intent.step not in self.registry.ledger:
            return None
        message_id = f"{intent.id}:{intent.step}:resend:{time.time_ns() // 1_000_000}"
        return self._command(intent, intent.step, legs.legs(intent), message_id)


def _fail(intent: IntentRow, code: str, reason: str, cause: str | None) -> Plan:
    return Plan(
        intent, Move(intent.id, intent.state, FAILED, reason, cause_message_id=cause, failure_code=code)
    )


def applied(intent: IntentRow, plan: Plan) -> IntentRow:
    """The intent as it will be once `plan` commits (for a later message of the same batch)."""
    move = plan.move
    fees = intent.fees
    if move.fees is not None:
        fees = tuple(msgspec.json.decode(move.fees, type=list[StoredFee]))
    return dataclasses.replace(
        intent,
        state=move.to_state,
        step=move.to_step,
        fees=fees,
        channel=move.channel or intent.channel,
        route=move.route or intent.route,
    )
