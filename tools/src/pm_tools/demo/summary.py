"""What came of `pm demo`'s intents: each outcome, the wallets read back, the ledger's own check, and
everything that did not end as its scenario says or does not add up (a `problem`: the summary is `ok`
only when there is none)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from pm_client import api, fx_api, merchant_api
from pm_tools.demo.fx_plan import repriced
from pm_tools.demo.ledger_check import LedgerCheck, LiquidityCheck
from pm_tools.demo.merchant import COMMISSION_RULE, SHOP, commission
from pm_tools.demo.plan import REFUSED, Liquidity, Merchant, Planned, User, demo_fees, expected_text
from pm_tools.demo.topup_plan import topup_wrong


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
    """The problem code of a refusal the scenario expects (`over_miniapp_cap`, `quote_used`)."""
    quote: fx_api.Quote | None = None
    """An exchange's quote (a quote used twice: the one used again)."""
    payment: api.Payment | None = None
    """A top-up's QR, as its intent showed it before the demo paid it."""

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

    def exchange(self) -> api.Exchange | None:
        """What a settled exchange (or top-up) moved, as its intent says (its quote's figures)."""
        return self.intent.exchange if self.intent is not None and self.state == "SETTLED" else None


@dataclass(frozen=True)
class WalletCheck:
    owner_id: str
    name: str
    funded: bool
    currency: str
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


@dataclass(frozen=True)
class ExchangeFigures:
    """The settled exchanges of one direction: what they sold (principal + spread) and bought."""

    sell: str
    buy: str
    settled: int
    sold: int
    principal: int
    spread: int
    bought: int


@dataclass(frozen=True)
class TopupFigures:
    """The settled SBP top-ups: the roubles they collected (principal + spread) and the baht bought."""

    settled: int
    collected: int
    principal: int
    spread: int
    bought: int


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
    rate: fx_api.Rate | None = None
    """The rate the run set for its exchanges (None: it had none)."""
    topup_rate: fx_api.Rate | None = None
    """The THB/RUB rate the run set for its SBP top-ups (None: it made none)."""

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
        """Principal moved by settled intents of `type_` in the run's currency (an exchange: sold)."""
        return sum(
            o.planned.amount
            for o in self.outcomes
            if o.planned.type == type_ and o.state == "SETTLED" and o.planned.currency is None
        )

    def moved_in(self, scenario: str, currency: str | None = None) -> int:
        """Principal moved by settled intents of `scenario` (in `currency`, default the run's)."""
        return sum(
            o.planned.amount
            for o in self.outcomes
            if o.planned.scenario == scenario
            and o.state == "SETTLED"
            and o.planned.money(self.currency)[0] == (currency or self.currency)
        )

    def exchanges(self) -> list[ExchangeFigures]:
        """The settled exchanges by direction (sold → bought currency), from their intents."""
        by: dict[tuple[str, str], list[api.Exchange]] = {}
        for o in self.outcomes:
            done = o.exchange() if o.planned.type == "FX_EXCHANGE" else None
            if done is not None:
                by.setdefault(o.planned.money(self.currency), []).append(done)
        return [
            ExchangeFigures(
                sell,
                buy,
                len(done),
                sum(e.principal + e.spread for e in done),
                sum(e.principal for e in done),
                sum(e.spread for e in done),
                sum(e.buy_amount for e in done),
            )
            for (sell, buy), done in sorted(by.items())
        ]

    def topups(self) -> TopupFigures:
        """The settled top-ups, from their intents (the roubles collected, the baht bought)."""
        done = [
            (o.intent.amount, e)
            for o in self.outcomes
            if o.planned.type == "SBP_TOPUP" and o.intent is not None and (e := o.exchange()) is not None
        ]
        return TopupFigures(
            len(done),
            sum(amount for amount, _ in done),
            sum(e.principal for _, e in done),
            sum(e.spread for _, e in done),
            sum(e.buy_amount for _, e in done),
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
                for t in (
                    "P2P",
                    "ADJUSTMENT",
                    "PROMPTPAY_WITHDRAWAL",
                    "MINIAPP_CREDIT",
                    "MINIAPP_CHARGE",
                    "FX_EXCHANGE",
                    "SBP_TOPUP",
                )
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
                    "currency": w.currency,
                    "expected": w.expected,
                    "posted": w.posted,
                    "pending": w.pending,
                    "available": w.available,
                    "ok": w.ok,
                }
                for w in self.wallets
            ],
            "merchant": None if self.shop is None else self._merchant_json(self.shop),
            "exchanges": None if self.rate is None else self._exchanges_json(self.rate),
            "topups": None if self.topup_rate is None else self._topups_json(self.topup_rate),
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
            "moved": party_moves(self.outcomes, self.currency)[(SHOP.id, self.currency)],
            "account": account,
        }

    def _topups_json(self, rate: fx_api.Rate) -> dict[str, object]:
        figures = self.topups()
        moved = ("RUB", "THB")
        checks = [c for c in self.ledger.liquidity if c.currency in moved] if self.ledger is not None else []
        return {
            "rate": _rate_json(rate),
            "settled": figures.settled,
            "collected": figures.collected,
            "principal": figures.principal,
            "spread": figures.spread,
            "bought": figures.bought,
            "liquidity": [_liquidity_json(c) for c in checks],
        }

    def _exchanges_json(self, rate: fx_api.Rate) -> dict[str, object]:
        checks = self.ledger.liquidity if self.ledger is not None else []
        checks = [c for c in checks if c.currency in ("THB", "USD")]
        return {
            "rate": _rate_json(rate),
            "directions": [
                {
                    "sell": f.sell,
                    "buy": f.buy,
                    "settled": f.settled,
                    "sold": f.sold,
                    "principal": f.principal,
                    "spread": f.spread,
                    "bought": f.bought,
                }
                for f in self.exchanges()
            ],
            "liquidity": [_liquidity_json(c) for c in checks],
        }


def _rate_json(rate: fx_api.Rate) -> dict[str, object]:
    return {"id": rate.id, "pair": rate.pair, "rate": rate.rate, "spreadBps": rate.spread_bps}


def _liquidity_json(c: LiquidityCheck) -> dict[str, object]:
    return {
        "currency": c.currency,
        "before": c.before,
        "after": c.after,
        "pending": c.pending,
        "moved": c.moved,
        "ok": c.ok,
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


def party_moves(outcomes: Sequence[Outcome], currency: str) -> Counter[tuple[str, str]]:
    """What the settled intents moved in and out of each user and merchant, by (id, currency), fees
    included (from what the intents say they moved; `currency` is the run's). An exchange takes its
    amount in the sold currency and gives what its intent says it bought in the other."""
    moves: Counter[tuple[str, str]] = Counter()
    for o in outcomes:
        if o.state != "SETTLED":
            continue
        p = o.planned
        sold, bought = p.money(currency)
        exchanged = o.exchange()
        if isinstance(p.payee, User | Merchant):
            moves[(p.payee.id, bought)] += exchanged.buy_amount if exchanged is not None else p.amount
        if isinstance(p.payer, User | Merchant):
            moves[(p.payer.id, sold)] -= p.amount
        for fee in o.fees():
            # A fee is in the intent's currency (an exchange's: the sold one), whoever pays it.
            side = p.payee if fee_payer(fee.rule_id) == "target" else p.payer
            if isinstance(side, User | Merchant):
                moves[(side.id, sold)] -= fee.amount
    return moves


def liquidity_moves(outcomes: Sequence[Outcome], currency: str) -> Counter[str]:
    """What the settled intents moved in and out of the liquidity account of each currency: its
    fundings, each exchange's (and top-up's) principal into the sold currency's, and its bought amount
    out of the other's (the spread goes to fee revenue)."""
    moves: Counter[str] = Counter()
    for o in outcomes:
        if o.state != "SETTLED":
            continue
        p = o.planned
        sold, bought = p.money(currency)
        if isinstance(p.payee, Liquidity):
            moves[sold] += p.amount
        exchanged = o.exchange()
        if exchanged is not None:
            moves[sold] += exchanged.principal
            moves[bought] -= exchanged.buy_amount
    return moves


def expected_balances(
    wallets: Sequence[tuple[str, str]], outcomes: Sequence[Outcome], currency: str
) -> dict[tuple[str, str], int]:
    """The posted balance of each (user id, currency) wallet after the settled intents (its wallet is
    new each run); `currency` is the run's."""
    moves = party_moves(outcomes, currency)
    return {wallet: moves[wallet] for wallet in wallets}


def expected_fees(p: Planned) -> dict[str, int] | None:
    """The fees a settled intent of `p` must carry, per rule id (None: not checked)."""
    if p.type == "P2P":
        return demo_fees(p.amount)
    if p.type == "MINIAPP_CHARGE":
        fee = commission(p.amount)
        return {COMMISSION_RULE: fee} if fee else {}
    if p.type in ("MINIAPP_CREDIT", "FX_EXCHANGE", "SBP_TOPUP"):
        return {}
    return None


def exchange_wrong(o: Outcome) -> str | None:
    """What is wrong with a settled exchange: its quote not what its own rate prices, or its intent not
    carrying out exactly its quote (the intent's id is the quote's)."""
    quote, intent = o.quote, o.intent
    if quote is None or intent is None:
        return "no quote" if intent is not None else None
    if not repriced(quote):
        priced = f"its rate {quote.rate} and spread {quote.spread_bps} bp"
        return f"its quote {quote.quote_id} is not what {priced} price"
    wanted = api.Exchange(
        quote_id=str(quote.quote_id),
        buy_currency=quote.buy.currency,
        buy_amount=quote.buy.amount,
        principal=quote.principal,
        spread=quote.fee,
        rate=quote.rate,
        pair=quote.pair,
        spread_bps=quote.spread_bps,
    )
    if intent.id != str(quote.quote_id) or intent.exchange != wanted:
        return f"intent {intent.id} carries out {intent.exchange}, not its quote {wanted}"
    return None


def _wrong(o: Outcome) -> str | None:
    """What is wrong with a settled exchange or top-up beyond its state (None: nothing)."""
    if o.planned.type == "FX_EXCHANGE":
        return exchange_wrong(o)
    if o.planned.type == "SBP_TOPUP" and o.intent is not None:
        return topup_wrong(o.planned, o.intent, o.payment)
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
        wrong = _wrong(o) if o.state == "SETTLED" else None
        if wrong is not None:
            found.append(f"{what}: {wrong}")
    for w in wallets:
        if not w.ok:
            found.append(
                f"wallet {w.owner_id} ({w.currency}): posted {w.posted} pending {w.pending}, "
                f"expected posted {w.expected} pending 0"
            )
    if ledger is not None:
        found += ledger.problems()
    return found
