"""What came of `pm demo`'s intents: each outcome, the wallets read back, the ledger's own check, and
everything that did not end as its scenario says or does not add up (a `problem`: the summary is `ok`
only when there is none)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pm_client import api, merchant_api
from pm_tools.demo.ledger_check import LedgerCheck
from pm_tools.demo.merchant import COMMISSION_RULE, SHOP, commission
from pm_tools.demo.plan import REFUSED, Merchant, Planned, User, demo_fees, expected_text


@dataclass
class Outcome:
    planned: Planned
    intent: api.Intent | None = None
    error: str | None = None
    """What went otherwise than planned before a terminal intent (or an expected refusal or decline):
    the gateway refused it, or it did not finish in time."""
    latency_s: float | None = None
    """Accepted (CREATED) to terminal, from the intent's timeline."""
    request: merchant_api.PaymentRequest | None = None
    """A charge's payment request (its last answer: DECLINED for one the user declined)."""
    refused: str | None = None
    """The problem code of a refusal the scenario expects (`over_miniapp_cap`)."""

    @property
    def state(self) -> str:
        if self.intent is not None:
            return self.intent.status
        if self.refused is not None:
            return REFUSED
        if self.request is not None and self.error is None:
            return self.request.status
        return "REJECTED" if self.error and self.error.startswith("HTTP") else "UNKNOWN"

    @property
    def failure_code(self) -> str | None:
        return self.intent.failure_code if self.intent is not None else self.refused

    def fees(self) -> list[api.Fee]:
        return self.intent.fees if self.intent is not None and self.state == "SETTLED" else []


@dataclass(frozen=True)
class WalletCheck:
    owner_id: str
    name: str
    funded: bool
    expected: int
    """What the settled intents leave on it (posted; nothing should stay pending)."""
    posted: int | None
    pending: int | None
    available: int | None

    @property
    def ok(self) -> bool:
        return self.posted == self.expected and self.pending == 0


@dataclass(frozen=True)
class ShopSummary:
    """The demo merchant as this run found it."""

    merchant_id: str
    miniapp_id: str
    onboarding: str
    """How the run came by its key: onboarded now, found again (the same onboarding replayed), or
    onboarded earlier under another admin key (its secret rotated for this run)."""


@dataclass
class DemoSummary:
    run_id: str
    currency: str
    users: list[User]
    outcomes: list[Outcome]
    wallets: list[WalletCheck]
    payments_s: float
    """Wall time of the payment phase: first submission to the last terminal answer."""
    problems: list[str] = field(default_factory=list)
    shop: ShopSummary | None = None
    """The demo merchant (None: the run had no merchant traffic)."""
    ledger: LedgerCheck | None = None
    """The ledger's own check (None: not asked for)."""
    notes: list[str] = field(default_factory=list)
    """What the run left out or did on its own, and why (not problems)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_state(self) -> Counter[tuple[str, str, str]]:
        """Intents by (type, state, failure code or "")."""
        return Counter((o.planned.type, o.state, o.failure_code or "") for o in self.outcomes)

    def by_scenario(self) -> Counter[tuple[str, str, str]]:
        return Counter((o.planned.scenario, o.state, o.failure_code or "") for o in self.outcomes)

    def payments(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.planned.type == "P2P"]

    def fees_collected(self) -> dict[str, int]:
        """Fees paid by settled intents, per rule id."""
        out: Counter[str] = Counter()
        for o in self.outcomes:
            for fee in o.fees():
                out[fee.rule_id] += fee.amount
        return dict(out)

    def moved(self, type_: str) -> int:
        """Principal moved by settled intents of `type_`."""
        return sum(
            o.planned.amount for o in self.outcomes if o.planned.type == type_ and o.state == "SETTLED"
        )

    def moved_in(self, scenario: str) -> int:
        """Principal moved by settled intents of `scenario`."""
        return sum(
            o.planned.amount for o in self.outcomes if o.planned.scenario == scenario and o.state == "SETTLED"
        )

    def throughput(self) -> float:
        done = sum(1 for o in self.payments() if o.intent is not None)
        return done / self.payments_s if self.payments_s > 0 else 0.0

    def latency_ms(self, quantile: float) -> float | None:
        values = sorted(o.latency_s for o in self.payments() if o.latency_s is not None)
        if not values:
            return None
        # Nearest rank: the smallest value with at least `quantile` of them at or below it.
        rank = max(1, math.ceil(quantile * len(values)))
        return values[rank - 1] * 1000

    def to_json(self) -> dict[str, object]:
        """The summary as `pm demo --json` prints it."""
        return {
            "runId": self.run_id,
            "ok": self.ok,
            "currency": self.currency,
            "intents": [
                {"type": t, "state": s, "failureCode": c or None, "count": n}
                for (t, s, c), n in sorted(self.by_state().items())
            ],
            "scenarios": [
                {
                    "scenario": sc,
                    "expected": expected_text(sc),
                    "state": s,
                    "failureCode": c or None,
                    "count": n,
                }
                for (sc, s, c), n in sorted(self.by_scenario().items())
            ],
            "feesCollected": self.fees_collected(),
            "feesTotal": sum(self.fees_collected().values()),
            "moved": {
                t: self.moved(t)
                for t in ("P2P", "ADJUSTMENT", "PROMPTPAY_WITHDRAWAL", "MINIAPP_CREDIT", "MINIAPP_CHARGE")
            },
            "payments": len(self.payments()),
            "paymentsSeconds": round(self.payments_s, 3),
            "throughputPerSecond": round(self.throughput(), 1),
            "latencyMs": {"p50": _round(self.latency_ms(0.5)), "p95": _round(self.latency_ms(0.95))},
            "wallets": [
                {
                    "ownerId": w.owner_id,
                    "name": w.name,
                    "funded": w.funded,
                    "expected": w.expected,
                    "posted": w.posted,
                    "pending": w.pending,
                    "available": w.available,
                    "ok": w.ok,
                }
                for w in self.wallets
            ],
            "merchant": None if self.shop is None else self._merchant_json(self.shop),
            "ledger": None if self.ledger is None else _ledger_json(self.ledger),
            "notes": self.notes,
            "problems": self.problems,
        }

    def _merchant_json(self, shop: ShopSummary) -> dict[str, object]:
        m = self.ledger.merchant if self.ledger is not None else None
        account = (
            None
            if m is None
            else {"before": m.before, "after": m.after, "pending": m.pending, "moved": m.moved, "ok": m.ok}
        )
        return {
            "merchantId": shop.merchant_id,
            "miniappId": shop.miniapp_id,
            "onboarding": shop.onboarding,
            "funded": self.moved_in("merchant-funding"),
            "credited": self.moved("MINIAPP_CREDIT"),
            "charged": self.moved("MINIAPP_CHARGE"),
            "commission": self.fees_collected().get(COMMISSION_RULE, 0),
            "moved": party_moves(self.outcomes)[SHOP.id],
            "account": account,
        }


def _ledger_json(check: LedgerCheck) -> dict[str, object]:
    return {
        "where": check.where,
        "ok": check.ok,
        "ledgers": [
            {
                "currency": t.currency,
                "ledger": t.ledger,
                "accounts": t.accounts,
                "debitsPosted": t.debits_posted,
                "creditsPosted": t.credits_posted,
                "debitsPending": t.debits_pending,
                "creditsPending": t.credits_pending,
                "balanced": t.balanced,
            }
            for t in check.totals
        ],
        "checked": check.checked,
        "belowZero": [
            {"accountId": f"{b.account_id:#x}", "what": b.what, "currency": b.currency, "posted": b.posted}
            for b in check.below_zero
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def fee_payer(rule_id: str) -> str:
    """Who pays a fee of `rule_id`: the merchant's commission is the target's (the merchant's); the
    demo's other rules charge the source (a fee of another rule is a problem anyway)."""
    return "target" if rule_id == COMMISSION_RULE else "source"


def party_moves(outcomes: Sequence[Outcome]) -> Counter[str]:
    """What the settled intents moved in and out of each user and merchant, by id, fees included (from
    what the intents say they moved)."""
    moves: Counter[str] = Counter()
    for o in outcomes:
        if o.state != "SETTLED":
            continue
        p = o.planned
        if isinstance(p.payee, User | Merchant):
            moves[p.payee.id] += p.amount
        if isinstance(p.payer, User | Merchant):
            moves[p.payer.id] -= p.amount
        for fee in o.fees():
            side = p.payee if fee_payer(fee.rule_id) == "target" else p.payer
            if isinstance(side, User | Merchant):
                moves[side.id] -= fee.amount
    return moves


def expected_balances(users: Sequence[User], outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Each wallet's posted balance after the settled intents (its wallet is new each run)."""
    moves = party_moves(outcomes)
    return {u.id: moves[u.id] for u in users}


def expected_fees(p: Planned) -> dict[str, int] | None:
    """The fees a settled intent of `p` must carry, per rule id (None: not checked)."""
    if p.type == "P2P":
        return demo_fees(p.amount)
    if p.type == "MINIAPP_CHARGE":
        fee = commission(p.amount)
        return {COMMISSION_RULE: fee} if fee else {}
    if p.type == "MINIAPP_CREDIT":
        return {}
    return None


def problems(
    outcomes: Sequence[Outcome], wallets: Sequence[WalletCheck], ledger: LedgerCheck | None = None
) -> list[str]:
    """Everything that did not end as its scenario says, and every balance that does not add up."""
    found: list[str] = []
    for o in outcomes:
        p = o.planned
        what = f"{p.type} {p.key} ({p.scenario}, {p.amount})"
        if o.intent is not None:
            what += f" {o.intent.id}"
        if o.error is not None:
            found.append(f"{what}: no terminal state ({o.error})")
            continue
        got = (o.state, o.failure_code)
        if got != p.expected:
            found.append(f"{what}: expected {expected_text(p.scenario)}, got {' '.join(filter(None, got))}")
            continue
        wanted = expected_fees(p)
        if o.intent is not None and o.state == "SETTLED" and wanted is not None:
            fees = {f.rule_id: f.amount for f in o.intent.fees}
            if fees != wanted:
                found.append(f"{what}: fees {fees}, expected {wanted}")
    for w in wallets:
        if not w.ok:
            found.append(
                f"wallet {w.owner_id}: posted {w.posted} pending {w.pending}, "
                f"expected posted {w.expected} pending 0"
            )
    if ledger is not None:
        found += ledger.problems()
    return found
