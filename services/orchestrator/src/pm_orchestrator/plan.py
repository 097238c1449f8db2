"""Deciding what one message does to one intent: the move, the messages it sends, what to undo.

Planning reads the intent as loaded for the batch and never writes; `saga` applies the plans of a
batch in one transaction. A message that no longer fits the intent (it is in another state, or
awaits another step) plans nothing: it is a stale duplicate or arrived out of order.

After a step succeeds the next step of the route is sent: a ledger command or a PSP job. The
`transfer` step (authorize and settle in one round trip) ends its route: its result moves the intent
`VALIDATED → AUTHORIZED → SETTLED` in one move (`Move.via`), and its refusal fails it with nothing
to void. A PSP's final FAILED voids what is authorized and fails the intent; its SUCCEEDED sends
`settle`; UNKNOWN and PENDING (the payer has a QR to pay) keep the intent where it is, on the record.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field

import msgspec

from pm_orchestrator import failures
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, TERMINAL, VALIDATED, Move
from pm_orchestrator.steps import Context, Draft, LedgerStep, StepFailed, StepRegistry
from pm_shared.errors import PermanentError
from pm_shared.intents import legs
from pm_shared.intents.record import IntentRow, StoredFee
from pm_shared.messages import LedgerCommand, LedgerResult, PspResult, now
from pm_shared.outbox import Outgoing
from pm_shared.streams.names import LEDGER_COMMANDS

VOID_STEP = "void"
# In the message id of a command sent again by the resume sweep (see Planner.resend).
RESEND_MARK = ":resend:"

log = logging.getLogger(__name__)


class UnknownPspStatusError(PermanentError):
    """A PSP result with a status this build does not know: no retry can change that."""

    reason = "unknown_psp_status"


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
    alert: Alert | None = None
    """Something an operator must look at (raised before the move commits)."""


@dataclass(frozen=True)
class Alert:
    """A `pm.reconciliation_alert` row: PM could not settle something on its own."""

    kind: str
    detail: dict[str, object]


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

    def _send(self, intent: IntentRow, step: str, all_legs: list[legs.Leg], message_id: str) -> Outgoing:
        """The message that starts `step`: a ledger command or a PSP job."""
        if step in self.registry.ledger:
            return Outgoing(LEDGER_COMMANDS.name, self._command(intent, step, all_legs, message_id))
        psp = self.registry.psp.get(step)
        if psp is None:
            raise RuntimeError(f"step {step!r} is neither a ledger nor a PSP step of this build")
        return Outgoing(psp.stream, psp.job(intent, message_id))

    def _after(self, intent: IntentRow, step: str) -> str | None:
        """The step of the intent's route that follows `step` (None: it was the last)."""
        route = intent.route or ()
        following = route[route.index(step) + 1 :] if step in route else ()
        return following[0] if following else None

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
        misfit = self.registry.misfit(route.steps)
        if misfit is not None:
            where = f"route {route.operation_type}/{route.channel}"
            return _fail(intent, failures.ROUTE_UNAVAILABLE, f"{where}: {misfit}", cause)
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
            first = self._send(priced, name, all_legs, f"{intent.id}:{name}")
            done = ", ".join(passed) if passed else "nothing to check"
            psp = self.registry.psp.get(name)
            where = f"the {psp.psp} adapter" if psp is not None else "the ledger"
            return Plan(
                intent,
                Move(
                    intent.id,
                    CREATED,
                    VALIDATED,
                    f"{done}; {name} sent to {where}",
                    cause_message_id=cause,
                    to_step=name,
                    fees=_encode(draft.fees),
                    legs=_encode(_requested(intent.id, all_legs, self.registry.ledger.get(name))),
                    channel=route.channel,
                    route=route.steps,
                ),
                [first],
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
            upcoming = self._after(intent, step.name)
            if upcoming is None:
                applied_by = (
                    f"{step.name} applied by the ledger"
                    if step.via is None
                    else f"{step.name} applied by the ledger: every leg posted in one linked chain"
                )
                return Plan(
                    intent,
                    Move(
                        intent.id,
                        intent.state,
                        step.reaches,
                        applied_by,
                        cause_message_id=cause,
                        from_step=step.name,
                        via=step.via,
                        legs=_encode(
                            legs.display(
                                intent.id, all_legs, "posted" if step.reaches == SETTLED else "pending"
                            )
                        ),
                    ),
                    settled_legs=all_legs if step.reaches == SETTLED else None,
                )
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
                [self._send(intent, upcoming, all_legs, f"{intent.id}:{upcoming}")],
            )
        liquidity = frozenset(leg.id for leg in all_legs if leg.name == legs.BUY)
        failure = failures.from_ledger(result, liquidity)
        if failures.lost_first_answer(result):
            # A repeat of a command the ledger refused before: that first answer carries the real
            # reason and is on its way, unless it was lost long ago — as it was when this answers a
            # resend (sent only after the intent had not moved for the resume delay).
            resent = RESEND_MARK in result.command_id
            if not resent and time.time() - intent.updated_at.timestamp() < self.already_failed_grace_s:
                return None
            failure = failures.Failure(
                failures.LEDGER_REJECTED, f"{result.step}: refused earlier by the ledger"
            )
        plan = self._fail_step(intent, failure, cause, step.name, all_legs)
        route = intent.route or ()
        at = route.index(step.name) if step.name in route else 0
        psp_before = [name for name in route[:at] if name in self.registry.psp]
        if psp_before:
            # The PSP has moved the money already (its step succeeded before this one was sent), but
            # the ledger refuses to record it: only an operator can put that right.
            plan.alert = Alert(
                "ledger_refused_after_psp",
                {"step": step.name, "failure_code": failure.code, "reason": failure.reason},
            )
            log.error(
                "intent %s: %s refused by the ledger after %s succeeded: %s",
                intent.id,
                step.name,
                ", ".join(psp_before),
                failure.reason,
                extra={"intent_id": intent.id},
            )
        return plan

    def _fail_step(
        self,
        intent: IntentRow,
        failure: failures.Failure,
        cause: str | None,
        from_step: str | None,
        all_legs: list[legs.Leg],
    ) -> Plan:
        """FAILED with `failure`, voiding what the intent holds and giving back its limits."""
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
                from_step=from_step,
                legs=_encode(legs.display(intent.id, all_legs, shown)),
            ),
            outgoing,
        )
        if "reserve_limits" in (intent.route or ()) and intent.source.kind == "user":
            plan.release_limits_of = intent.source.id
        return plan

    def psp_result(self, intent: IntentRow, result: PspResult) -> Plan | None:
        """Apply a PSP adapter's answer to the PSP step the intent awaits."""
        step = self.registry.psp.get(intent.step or "")
        if step is None or intent.state in TERMINAL or step.psp != result.psp:
            return None
        cause = result.message_id
        reference = f" (reference {result.psp_reference})" if result.psp_reference else ""
        if result.status == "SUCCEEDED":
            upcoming = self._after(intent, step.name)
            if upcoming is None:
                raise RuntimeError(f"the route of {intent.type} ends with {step.name!r}: nothing records it")
            all_legs = legs.legs(intent)
            return Plan(
                intent,
                Move(
                    intent.id,
                    intent.state,
                    intent.state,
                    f"{step.psp} {step.action} succeeded{reference}; {upcoming} sent",
                    cause_message_id=cause,
                    from_step=step.name,
                    to_step=upcoming,
                ),
                [self._send(intent, upcoming, all_legs, f"{intent.id}:{upcoming}")],
            )
        if result.status == "FAILED":
            return self._fail_step(intent, failures.from_psp(result), cause, step.name, legs.legs(intent))
        if result.status == "PENDING":
            if result.payment_link is None:
                return None
            payment: dict[str, object] = {"kind": f"{step.psp}_qr", "link": result.payment_link}
            if result.expires_at is not None:
                payment["expiresAt"] = result.expires_at.isoformat()
            if result.psp_reference is not None:
                payment["pspReference"] = result.psp_reference
            if intent.payment == payment:
                return None  # a redelivered job's PENDING: the payer was shown this already
            return Plan(
                intent,
                Move(
                    intent.id,
                    intent.state,
                    intent.state,
                    f"{step.psp}: the payer can pay{reference}; waiting for the payment",
                    cause_message_id=cause,
                    from_step=step.name,
                    to_step=step.name,
                    payment=_encode(payment),
                ),
            )
        if result.status == "UNKNOWN":
            return Plan(
                intent,
                Move(
                    intent.id,
                    intent.state,
                    intent.state,
                    f"{step.psp} {step.action}: outcome not known yet{reference}; the adapter keeps asking",
                    cause_message_id=cause,
                    from_step=step.name,
                    to_step=step.name,
                ),
            )
        raise UnknownPspStatusError(f"PSP result {result.message_id} has status {result.status!r}")

    def resend(self, intent: IntentRow) -> Outgoing | None:
        """The message of the step a stalled intent awaits, under a new message id: the same
        transfers (the ledger answers those already applied with EXISTS), or the same PSP job (same
        idempotency key: the adapter answers with what it knows, the PSP pays at most once)."""
        step = intent.step
        if intent.state not in (VALIDATED, AUTHORIZED) or step is None:
            return None
        if step not in self.registry.ledger and step not in self.registry.psp:
            return None
        message_id = f"{intent.id}:{step}{RESEND_MARK}{time.time_ns() // 1_000_000}"
        return self._send(intent, step, legs.legs(intent), message_id)


def _requested(intent_id: str, all_legs: list[legs.Leg], step: LedgerStep | None) -> list[dict[str, object]]:
    """The legs as shown once the first step is sent. A step that moves everything at once sends every
    leg, so none is merely "planned" (as a POST fee is while an authorization waits for `settle`)."""
    shown = legs.display(intent_id, all_legs, "requested")
    if step is not None and step.alone:
        return [{**leg, "state": "requested"} for leg in shown]
    return shown


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
    payment = intent.payment
    if move.payment is not None:
        payment = msgspec.json.decode(move.payment)
    return dataclasses.replace(
        intent,
        state=move.to_state,
        step=move.to_step,
        fees=fees,
        channel=move.channel or intent.channel,
        route=move.route or intent.route,
        payment=payment,
    )
