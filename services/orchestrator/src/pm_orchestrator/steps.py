"""The StepRegistry: step names of `pm.payment_route` → what each step does.

Two kinds of step:
- local steps run inside the orchestrator when an intent is taken in (`validate`, `price`,
  `reserve_limits`); each either passes or fails the intent with a code;
- ledger steps send one command to the ledger-writer and wait for its result (`authorize`,
  `settle`, `transfer`); `reaches` is the state the intent is in once the ledger has applied the
  command. `transfer` is authorize and settle in one round trip, for a route with no external step:
  every leg (the principal, PRE and POST fees) as one linked chain of posted transfers, all or
  nothing, whose one result records AUTHORIZED and SETTLED (a hold is only worth its second round
  trip while something outside the ledger still decides). It must be its route's only ledger or PSP
  step;
- PSP steps send one job to a PSP adapter and wait for its final result (`psp_payout` through IPPS,
  `psp_collect` through QP); the intent keeps its state meanwhile. The job's idempotency key is
  `psp_key(intent, step)`, the same on every resend, so the PSP moves the money at most once.
A route naming a step the registry does not have fails its intents at intake with
ROUTE_UNAVAILABLE, before any money moves.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import msgspec
from prometheus_client import Histogram

from pm_orchestrator import failures
from pm_orchestrator.rules import Rules
from pm_orchestrator.states import AUTHORIZED, SETTLED
from pm_shared import fees, ledger
from pm_shared.intents import legs
from pm_shared.intents.record import IntentRow, StoredFee
from pm_shared.messages import LedgerTransfer, Party, PspJob, now, psp_key
from pm_shared.streams.names import IPPS_JOBS, QP_JOBS

FEE_SECONDS = Histogram(
    "pm_fee_evaluation_seconds",
    "Time to price one intent (every candidate fee rule of its type).",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025),
)


class StepFailed(Exception):
    """A step failed the intent: it ends FAILED with `code`."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """What local steps may consult: the rules in force and which wallets of the batch exist."""

    rules: Rules
    wallets: frozenset[tuple[str, str]]
    """(user id, currency) of every open wallet among the batch's parties."""
    tier: str


@dataclass
class Draft:
    """An intent being taken in: what its local steps found so far."""

    intent: IntentRow
    fees: list[StoredFee] = field(default_factory=list)
    reserved_for: str | None = None
    """The user whose limits were reserved (to be released if a later step fails)."""


LocalStep = Callable[[Context, Draft], Awaitable[None]]


@dataclass(frozen=True)
class LedgerStep:
    name: str
    reaches: str
    build: Callable[[IntentRow, list[legs.Leg], int], list[LedgerTransfer]]
    """(intent, its legs, pending timeout in seconds) → the command's transfers."""
    via: str | None = None
    """A state the intent is recorded passing through when the ledger applied the command (the
    `transfer` step's AUTHORIZED)."""

    @property
    def alone(self) -> bool:
        """Moves all of the intent's money at once: no other ledger or PSP step may share its route."""
        return self.via is not None


@dataclass(frozen=True)
class PspStep:
    name: str
    psp: str
    """The adapter that does it (`ipps`, `qp`): the results it sends name it."""
    action: str
    stream: str
    """Where its jobs go (`pm:psp:<psp>:jobs`)."""

    def job(self, intent: IntentRow, message_id: str) -> PspJob:
        """The job for `intent`: always the same key, amount and target, whatever `message_id`."""
        if self.action == "payout":
            # The payee exactly as the API took it (a PromptPay proxy or biller, or a scanned QR).
            target = msgspec.convert(intent.target.details, Party)
            purpose = intent.comment
        else:
            target = Party(kind=intent.target.kind, id=intent.target.id)
            purpose = intent.comment or f"Top-up {intent.id}"
        return PspJob(
            intent_id=intent.id,
            message_id=message_id,
            produced_at=now(),
            psp=self.psp,
            action=self.action,
            amount=intent.amount,
            currency=intent.currency,
            target=target,
            idempotency_key=psp_key(intent.id, self.name),
            purpose=purpose,
        )


TRANSFER = "transfer"
"""The ledger step that authorizes and settles in one round trip (one linked chain of posted transfers)."""

PSP_PAYOUT = PspStep("psp_payout", "ipps", "payout", IPPS_JOBS.name)
PSP_COLLECT = PspStep("psp_collect", "qp", "collect", QP_JOBS.name)


async def validate(ctx: Context, draft: Draft) -> None:
    intent = draft.intent
    try:
        ledger.chart.ledger_of(intent.currency)
    except ledger.chart.UnknownCurrencyError as exc:
        raise StepFailed(failures.INVALID_INTENT, str(exc)) from None
    # An exchange pays from the payer's wallet in its currency into the payee's in the other.
    receives = intent.currency if intent.exchange is None else intent.exchange.buy_currency
    for role, side, currency in (
        ("payer", intent.source, intent.currency),
        ("payee", intent.target, receives),
    ):
        if side.kind == "user":
            if side.id is None:
                raise StepFailed(failures.INVALID_INTENT, f"the {role} has no user id")
            if (side.id, currency) not in ctx.wallets:
                raise StepFailed(failures.ACCOUNT_NOT_FOUND, f"the {role} {side.id} has no {currency} wallet")
        else:
            try:
                legs.party_account(side, currency)
            except legs.LegError as exc:
                raise StepFailed(failures.ROUTE_UNAVAILABLE, str(exc)) from None


async def price(ctx: Context, draft: Draft) -> None:
    intent = draft.intent
    started = time.perf_counter()
    try:
        applied = ctx.rules.fees.evaluate(
            fees.FeeInput(
                type=intent.type,
                amount=intent.amount,
                currency=intent.currency,
                source_kind=intent.source.kind,
                source_id=intent.source.id,
                target_kind=intent.target.kind,
                target_id=intent.target.id,
                requires_monitoring=intent.requires_monitoring,
                metadata=intent.metadata,
            ),
            # The creation time, not now: a retry prices exactly as the first attempt did.
            at=intent.created_at,
        )
    except fees.FeeEvaluationError as exc:
        raise StepFailed(exc.code, str(exc)) from None
    finally:
        FEE_SECONDS.observe(time.perf_counter() - started)
    draft.fees = [StoredFee.of(fee) for fee in applied]
    for fee in draft.fees:
        try:
            legs.fee_account(fee, intent.currency)
        except legs.LegError as exc:
            raise StepFailed(fees.FEE_RULE_ERROR, str(exc)) from None


async def reserve_limits(ctx: Context, draft: Draft) -> None:
    intent = draft.intent
    if intent.source.kind != "user" or intent.source.id is None:
        return
    user = intent.source.id
    reservation = await ctx.rules.limits.reserve(
        intent_id=intent.id,
        user=user,
        tier=ctx.tier,
        operation_type=intent.type,
        currency=intent.currency,
        amount=intent.amount,
        at=intent.created_at,
    )
    if not reservation.ok:
        exceeded = reservation.exceeded
        assert exceeded is not None
        cap = []
        if exceeded.limit_amount is not None:
            cap.append(f"amount {exceeded.used_amount}+{intent.amount} > {exceeded.limit_amount}")
        if exceeded.limit_count is not None:
            cap.append(f"count {exceeded.used_count}+1 vs {exceeded.limit_count}")
        raise StepFailed(
            failures.LIMIT_EXCEEDED,
            f"limit rule {exceeded.rule_id} v{exceeded.rule_version} ({exceeded.period}): " + ", ".join(cap),
        )
    draft.reserved_for = user


def _authorize(intent: IntentRow, all_legs: list[legs.Leg], timeout_s: int) -> list[LedgerTransfer]:
    return legs.authorize(intent, all_legs, timeout_s=timeout_s)


def _settle(intent: IntentRow, all_legs: list[legs.Leg], timeout_s: int) -> list[LedgerTransfer]:
    return legs.settle(intent, all_legs)


def _transfer(intent: IntentRow, all_legs: list[legs.Leg], timeout_s: int) -> list[LedgerTransfer]:
    # A route without `authorize` holds nothing (`legs.holds`), so every leg is a plain transfer and
    # `legs.settle` chains them all: the principal, then each fee in priority order. The ids are the
    # legs' own (`ids.transfer_id(intent id, leg name)`), so a resend or redelivery is EXISTS.
    if legs.holds(intent):
        raise RuntimeError(f"intent {intent.id}: `{TRANSFER}` on a route that authorizes ({intent.route})")
    return legs.settle(intent, all_legs)


class StepRegistry:
    def __init__(
        self,
        local: Mapping[str, LocalStep],
        ledger_steps: Iterable[LedgerStep],
        psp_steps: Iterable[PspStep] = (),
    ) -> None:
        self.local = dict(local)
        self.ledger = {step.name: step for step in ledger_steps}
        self.psp = {step.name: step for step in psp_steps}

    def missing(self, steps: Iterable[str]) -> list[str]:
        return [s for s in steps if s not in self.local and s not in self.ledger and s not in self.psp]

    def misfit(self, steps: Sequence[str]) -> str | None:
        """Why a route's steps cannot work together (None: they can): a step that moves everything at
        once (`transfer`) beside another ledger or PSP step."""
        outside = [s for s in steps if s in self.ledger or s in self.psp]
        alone = [s for s in outside if s in self.ledger and self.ledger[s].alone]
        if not alone or len(outside) == 1:
            return None
        others = ", ".join(s for s in outside if s != alone[0])
        return f"{alone[0]} moves all the money in one round trip; the route cannot also have {others}"


def default_registry() -> StepRegistry:
    return StepRegistry(
        {"validate": validate, "price": price, "reserve_limits": reserve_limits},
        [
            LedgerStep("authorize", AUTHORIZED, _authorize),
            LedgerStep("settle", SETTLED, _settle),
            LedgerStep(TRANSFER, SETTLED, _transfer, via=AUTHORIZED),
        ],
        [PSP_PAYOUT, PSP_COLLECT],
    )
