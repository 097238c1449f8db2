"""What came of `pm demo`'s intents: each outcome, the wallets read back, and everything that did not
end as its scenario says (a `problem`: the summary is `ok` only when there is none)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pm_client import api
from pm_tools.demo.plan import Planned, User, demo_fees, expected_text


@dataclass
class Outcome:
    planned: Planned
    intent: api.Intent | None = None
    error: str | None = None
    """Why there is no terminal intent: the gateway refused it, or it did not finish in time."""
    latency_s: float | None = None
    """Accepted (CREATED) to terminal, from the intent's timeline."""

    @property
    def state(self) -> str:
        if self.intent is None:
            return "REJECTED" if self.error and self.error.startswith("HTTP") else "UNKNOWN"
        return self.intent.status

    @property
    def failure_code(self) -> str | None:
        return self.intent.failure_code if self.intent is not None else None

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
                "P2P": self.moved("P2P"),
                "ADJUSTMENT": self.moved("ADJUSTMENT"),
                "PROMPTPAY_WITHDRAWAL": self.moved("PROMPTPAY_WITHDRAWAL"),
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
            "problems": self.problems,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def expected_balances(users: Sequence[User], outcomes: Sequence[Outcome]) -> dict[str, int]:
    """Each wallet's posted balance after the settled intents (from what the intents say they moved)."""
    balances = {u.id: 0 for u in users}
    for o in outcomes:
        if o.state != "SETTLED":
            continue
        p = o.planned
        if p.payee is not None and p.payee.id in balances:
            balances[p.payee.id] += p.amount
        if p.payer is not None and p.payer.id in balances:
            balances[p.payer.id] -= p.amount
        if p.payer is not None and p.payer.id in balances:
            # The demo's fee rules charge the payer (`payer: source`); any other fee is a problem anyway.
            balances[p.payer.id] -= sum(fee.amount for fee in o.fees())
    return balances


def problems(outcomes: Sequence[Outcome], wallets: Sequence[WalletCheck]) -> list[str]:
    """Everything that did not end as its scenario says."""
    found: list[str] = []
    for o in outcomes:
        p = o.planned
        what = f"{p.type} {p.key} ({p.scenario}, {p.amount})"
        if o.intent is None or o.state not in api.TERMINAL_STATES:
            found.append(f"{what}: no terminal state ({o.error})")
            continue
        got = (o.state, o.failure_code)
        if got != p.expected:
            found.append(
                f"{what} {o.intent.id}: expected {expected_text(p.scenario)}, "
                f"got {' '.join(filter(None, got))}"
            )
            continue
        if o.state == "SETTLED" and p.type == "P2P":
            fees = {f.rule_id: f.amount for f in o.intent.fees}
            if fees != demo_fees(p.amount):
                found.append(f"{what} {o.intent.id}: fees {fees}, expected {demo_fees(p.amount)}")
    for w in wallets:
        if not w.ok:
            found.append(
                f"wallet {w.owner_id}: posted {w.posted} pending {w.pending}, "
                f"expected posted {w.expected} pending 0"
            )
    return found
