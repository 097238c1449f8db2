"""What `pm demo` sends and what each intent must end as: its options, wallets, scenarios and the
demo fee rules (which only price payments between `demo-…` wallets, so other traffic is never
charged by them). The demo merchant's part of the plan is `pm_tools.demo.merchant`."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from pm_client import api
from pm_sandbox_ipps.values import MAGIC_AMOUNTS, MAGIC_SUFFIXES
from pm_tools.demo.errors import DemoError

CURRENCIES: tuple[str, ...] = get_args(get_args(api.Currency)[0])

# The demo fee rules. PRE: 1 % of the amount, at most 20.00; POST: a flat 5.00 on 1,000.00 and above.
PRE_RULE = "demo-p2p-pre"
POST_RULE = "demo-p2p-post"
PRE_PERCENT = 1
PRE_CAP = 2_000
POST_FLAT = 500
POST_FROM = 100_000
DEMO_PREFIX = "demo-"
_DEMO_PAYER = f'intent.source.kind == "user" && intent.source.id.startsWith("{DEMO_PREFIX}")'
_DEMO_PAYEE = f'intent.target.kind == "user" && intent.target.id.startsWith("{DEMO_PREFIX}")'
_DEMO_ONLY = f"{_DEMO_PAYER} && {_DEMO_PAYEE}"

Scenario = Literal[
    "funding",
    "settles",
    "unfunded-payer",
    "no-payee-wallet",
    "withdrawal",
    "refused-payee",
    "merchant-funding",
    "credit",
    "charge",
    "charge-unfunded",
    "declined",
    "over-cap",
    "usd-funding",
    "liquidity-funding",
    "exchange-to-usd",
    "exchange-to-thb",
    "quote-reused",
    "no-liquidity-funding",
    "no-liquidity",
    "topup-liquidity-funding",
    "topup",
]
REFUSED = "REFUSED"
"""The state of an expected refusal: the gateway said no (its problem code is the failure code)."""
# What each scenario must end as: (state, failure code).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "funding": ("SETTLED", None),
    "settles": ("SETTLED", None),
    "unfunded-payer": ("FAILED", "INSUFFICIENT_FUNDS"),
    "no-payee-wallet": ("FAILED", "ACCOUNT_NOT_FOUND"),
    # PromptPay withdrawals through adapter-ipps and the IPPS sandbox; a mobile number ending in 404
    # is one the sandbox's registry does not know (its magic values: see docs/psp.md).
    "withdrawal": ("SETTLED", None),
    "refused-payee": ("FAILED", "PAYEE_INVALID"),
    # The demo merchant: funded by the operator, it credits funded users through its mini-app, and
    # charges users who confirm its payment requests at /v1/me (it pays a commission on each charge).
    "merchant-funding": ("SETTLED", None),
    "credit": ("SETTLED", None),
    "charge": ("SETTLED", None),
    "charge-unfunded": ("FAILED", "INSUFFICIENT_FUNDS"),
    # A request the user declines makes no intent (and confirming it afterwards is refused, 409).
    "declined": ("DECLINED", None),
    # A request for more than the mini-app's cap on one charge is refused when the merchant asks.
    "over-cap": (REFUSED, "over_miniapp_cap"),
    # Exchanges THB <-> USD (`pm_tools.demo.exchange`): some users' USD wallets and both liquidity
    # accounts are funded by the operator, then the users exchange at quotes of the demo's rate.
    "usd-funding": ("SETTLED", None),
    "liquidity-funding": ("SETTLED", None),
    "exchange-to-usd": ("SETTLED", None),
    "exchange-to-thb": ("SETTLED", None),
    # A quote already used, sent again under another Idempotency-Key: refused, nothing moves.
    "quote-reused": (REFUSED, "quote_used"),
    # A user funded for an exchange that buys more USD than the liquidity account holds: it fails
    # whole, nothing moves on either ledger.
    "no-liquidity-funding": ("SETTLED", None),
    "no-liquidity": ("FAILED", "LIQUIDITY_INSUFFICIENT"),
    # SBP top-ups into THB wallets (`pm_tools.demo.topup_plan`): the THB liquidity is funded first, then
    # each top-up is priced in roubles at intake, its QR paid in the QP sandbox, and it settles.
    "topup-liquidity-funding": ("SETTLED", None),
    "topup": ("SETTLED", None),
}
UNKNOWN_PROXY = "0812345404"
# Mobile numbers the IPPS sandbox refuses at inquiry: a demo payee must not end so by chance.
_REFUSING_SUFFIXES = tuple(MAGIC_SUFFIXES)
# Whole baht in 50s, none of them one of the sandbox's fault amounts (of those, only 500.00 is whole).
_WITHDRAWAL_BAHT = [b for b in range(100, 3_001, 50) if b * 100 not in MAGIC_AMOUNTS]

_FIRST_NAMES = (
    "Somchai", "Malee", "Anan", "Ploy", "Kittisak", "Nok", "Arthit", "Pim", "Chai", "Dao",
    "Olga", "Ivan", "Maria", "John", "Aisha", "Kenji", "Lucia", "Tomasz", "Mei", "Noah",
)  # fmt: skip
_LAST_NAMES = (
    "Srisuk", "Wongsa", "Chaiyaporn", "Rattanakul", "Petrova", "Smirnov", "Garcia", "Tanaka",
    "Kowalski", "Chen", "Okafor", "Silva",
)  # fmt: skip
_COMMENTS = (
    "lunch", "coffee ☕", "rent share", "taxi home", "concert tickets", "birthday gift",
    "groceries", "thanks!", "football bet", "electricity bill", "", "", "ค่าข้าว", "ค่าแท็กซี่",
)  # fmt: skip


@dataclass(frozen=True)
class DemoOptions:
    users: int = 20
    payments: int = 200
    currency: str = "THB"
    concurrency: int = 16
    seed: int | None = None
    unfunded: int = 2
    """Wallets opened but never funded: their payments must fail with INSUFFICIENT_FUNDS."""
    wait_s: float = 60.0
    """How long to wait for one intent to be terminal."""
    rules_settle_s: float = 2.0
    """Time from installing the fee rules to the first payment: the orchestrator reloads rules every
    `PM_ORCHESTRATOR_RULES_REFRESH_S` (1 s by default), and a payment priced before would pay none."""
    run_id: str | None = None
    """Names this run's wallets and idempotency keys; random when None."""
    withdrawals: int = 0
    """PromptPay withdrawals from funded wallets (THB only; they need adapter-ipps and its sandbox,
    which `pm up` runs); about one in eight goes to a mobile number PromptPay does not know."""
    credits: int = 0
    """MINIAPP_CREDITs from the demo merchant to funded wallets (its own key)."""
    charges: int = 0
    """Payment requests of the demo merchant that users answer at /v1/me (a way to answer for them is
    needed: `pm_tools.demo.door`). From four on, one is from an unfunded wallet (INSUFFICIENT_FUNDS),
    one is declined and one asks more than the mini-app's cap (refused); the others settle."""

    exchanges: int = 0
    """FX_EXCHANGEs THB <-> USD by funded users (THB only; `pm_tools.demo.exchange`); from two on, a
    quote used twice (refused) and, with the ledger read, one the USD liquidity cannot cover."""
    topups: int = 0
    """SBP_TOPUPs into funded users' THB wallets, paid in roubles (THB only; `pm_tools.demo.topups`):
    they need adapter-qp and the QP sandbox the demo pays their QRs in, and are left out without it."""

    def check(self) -> None:
        """Raise DemoError (exit 2) for options the demo cannot run with."""
        if self.unfunded < 1 or self.users < self.unfunded + 2:
            raise DemoError(
                f"--users must be at least {self.unfunded + 2} (two funded, {self.unfunded} unfunded)", 2
            )
        if self.payments < 1:
            raise DemoError("--payments must be at least 1", 2)
        if self.concurrency < 1:
            raise DemoError("--concurrency must be at least 1", 2)
        if self.currency not in CURRENCIES:
            raise DemoError(f"unknown currency {self.currency!r} (known: {', '.join(CURRENCIES)})", 2)
        if self.withdrawals < 0:
            raise DemoError("--withdrawals must be 0 or more", 2)
        if self.withdrawals and self.currency != "THB":
            raise DemoError("PromptPay withdrawals pay THB: use --currency THB or --withdrawals 0", 2)
        if self.credits < 0 or self.charges < 0:
            raise DemoError("--credits and --charges must be 0 or more", 2)
        if self.exchanges < 0:
            raise DemoError("--exchanges must be 0 or more", 2)
        if self.exchanges and self.currency != "THB":
            raise DemoError("the demo exchanges THB <-> USD: use --currency THB or --exchanges 0", 2)
        if self.topups < 0:
            raise DemoError("--topups must be 0 or more", 2)
        if self.topups and self.currency != "THB":
            raise DemoError("the demo tops up THB wallets via SBP: use --currency THB or --topups 0", 2)

    @property
    def merchant(self) -> bool:
        """Whether the run has merchant traffic (and so onboards the demo merchant)."""
        return bool(self.credits or self.charges)


@dataclass(frozen=True)
class User:
    id: str
    name: str
    funded: bool


@dataclass(frozen=True)
class Merchant:
    """A merchant party: the demo merchant, paying its credits and paid by its charges."""

    id: str
    name: str


@dataclass(frozen=True)
class Liquidity:
    """The operator's FX liquidity account (code 30) in a currency: funded by an ADJUSTMENT."""

    name: str = "FX liquidity"


@dataclass(frozen=True)
class Sbp:
    """The payer of an SBP top-up: whoever pays its QR, in roubles, through QP (QP clearing pays)."""

    name: str = "SBP payer"


SBP_CURRENCY = "RUB"
"""What an SBP top-up collects, whatever the wallet's currency (docs/fx.md)."""


@dataclass(frozen=True)
class Planned:
    """One intent the demo sends, and what it must end as."""

    key: str
    """Its idempotency key."""
    scenario: Scenario
    type: Literal[
        "P2P",
        "ADJUSTMENT",
        "PROMPTPAY_WITHDRAWAL",
        "MINIAPP_CREDIT",
        "MINIAPP_CHARGE",
        "FX_EXCHANGE",
        "SBP_TOPUP",
    ]
    amount: int
    """In `currency`; an exchange's is what it sells (spread included); a top-up's is what it asks
    into the wallet (in the run's currency: the roubles it collects are priced at intake)."""
    payer: User | Merchant | Sbp | None  # None: the operator (funding)
    payee: User | Merchant | Liquidity | None  # None: a PromptPay mobile number (`proxy`)
    comment: str = ""
    proxy: str | None = None
    currency: str | None = None
    """What it moves (an exchange: what it sells); None: the run's currency."""
    buys: str | None = None
    """An exchange's bought currency; None: the run's currency."""

    def money(self, run_currency: str) -> tuple[str, str]:
        """(the currency it takes from the payer, the one it gives the payee): one and the same but
        for an exchange, and for a top-up, which collects roubles for the run's currency."""
        if self.type == "SBP_TOPUP":
            return SBP_CURRENCY, run_currency
        sold = self.currency or run_currency
        return sold, (self.buys or run_currency) if self.type == "FX_EXCHANGE" else sold

    @property
    def expected(self) -> tuple[str, str | None]:
        return EXPECTED[self.scenario]


def expected_text(scenario: str) -> str:
    state, code = EXPECTED[scenario]
    return f"{state} {code}" if code else state


def demo_fees(amount: int) -> dict[str, int]:
    """The fees the demo rules charge a payment between demo wallets, per rule id (0s left out)."""
    fees = {
        PRE_RULE: min(amount * PRE_PERCENT // 100, PRE_CAP),
        POST_RULE: POST_FLAT if amount >= POST_FROM else 0,
    }
    return {rule: fee for rule, fee in fees.items() if fee}


def fee_rules() -> list[api.FeeRuleIn]:
    """The demo's fee rules, as `POST /v1/admin/fee-rules` bodies."""
    pre_amount = f"intent.amount * {PRE_PERCENT} / 100"
    return [
        api.FeeRuleIn(
            rule_id=PRE_RULE,
            operation_type="P2P",
            condition=_DEMO_ONLY,
            amount=f"{pre_amount} < {PRE_CAP} ? {pre_amount} : {PRE_CAP}",
            timing="PRE",
            max_fee=PRE_CAP,
            priority=10,
            description=f"pm demo: {PRE_PERCENT}% of a payment between demo wallets, at most {PRE_CAP}",
        ),
        api.FeeRuleIn(
            rule_id=POST_RULE,
            operation_type="P2P",
            condition=f"{_DEMO_ONLY} && intent.amount >= {POST_FROM}",
            amount=str(POST_FLAT),
            timing="POST",
            max_fee=POST_FLAT,
            priority=20,
            description=f"pm demo: {POST_FLAT} flat on a payment of {POST_FROM} or more between demo wallets",
        ),
    ]


# --- the plan -------------------------------------------------------------------------------------


def _amount(rng: random.Random) -> int:
    """A payment amount in minor units: mostly small, some large enough for the POST fee."""
    roll = rng.random()
    if roll < 0.7:
        major = rng.randint(20, 500)
    elif roll < 0.93:
        major = rng.randint(500, 1_500)
    else:
        major = rng.randint(1_500, 5_000)
    return major * 100 + rng.choice((0, 0, 50, rng.randint(1, 99)))


def plan(options: DemoOptions, run_id: str, rng: random.Random) -> tuple[list[User], list[Planned], User]:
    """The users, the payments (in sending order) and the payee without a wallet."""
    users = [
        User(
            f"{DEMO_PREFIX}{run_id}-{i:03d}",
            f"{rng.choice(_FIRST_NAMES)} {rng.choice(_LAST_NAMES)}",
            funded=i < options.users - options.unfunded,
        )
        for i in range(options.users)
    ]
    ghost = User(f"{DEMO_PREFIX}{run_id}-nowallet", f"{rng.choice(_FIRST_NAMES)} (no wallet)", funded=False)
    funded = [u for u in users if u.funded]
    unfunded = [u for u in users if not u.funded]
    n = options.payments
    # A few of each failure (at least one when there are three payments or more), the rest settle.
    failing = n >= 3
    n_unfunded = max(1, round(n * 0.06)) if failing else 0
    n_ghost = max(1, round(n * 0.04)) if failing else 0
    counts: dict[Scenario, int] = {
        "unfunded-payer": n_unfunded,
        "no-payee-wallet": n_ghost,
        "settles": n - n_unfunded - n_ghost,
    }
    scenarios = [scenario for scenario, count in counts.items() for _ in range(count)]
    rng.shuffle(scenarios)
    payments: list[Planned] = []
    for j, scenario in enumerate(scenarios):
        if scenario == "unfunded-payer":
            payer, payee = rng.choice(unfunded), rng.choice(funded)
        elif scenario == "no-payee-wallet":
            payer, payee = rng.choice(funded), ghost
        else:
            payer, payee = rng.sample(funded, 2)
        payments.append(
            Planned(
                key=f"{run_id}:pay:{j}",
                scenario=scenario,
                type="P2P",
                amount=_amount(rng),
                payer=payer,
                payee=payee,
                comment=rng.choice(_COMMENTS),
            )
        )
    payments += withdrawals(options, run_id, rng, funded)
    return users, payments, ghost


def withdrawals(
    options: DemoOptions, run_id: str, rng: random.Random, funded: Sequence[User]
) -> list[Planned]:
    """PromptPay withdrawals from funded wallets to mobile numbers, one in eight to an unknown one."""
    n = options.withdrawals
    refused = max(1, n // 8) if n >= 2 else 0
    planned: list[Planned] = []
    for k in range(n):
        scenario: Scenario = "refused-payee" if k < refused else "withdrawal"
        proxy = UNKNOWN_PROXY
        while scenario == "withdrawal" and proxy.endswith(_REFUSING_SUFFIXES):
            proxy = f"0{rng.choice('689')}{rng.randint(10_000_000, 99_999_999)}"
        planned.append(
            Planned(
                key=f"{run_id}:withdraw:{k}",
                scenario=scenario,
                type="PROMPTPAY_WITHDRAWAL",
                amount=rng.choice(_WITHDRAWAL_BAHT) * 100,
                payer=rng.choice(list(funded)),
                payee=None,
                comment="cash out",
                proxy=proxy,
            )
        )
    rng.shuffle(planned)
    return planned


def funding(
    users: Sequence[User], payments: Sequence[Planned], run_id: str, rng: random.Random
) -> list[Planned]:
    """One ADJUSTMENT per funded user: what its payments need with fees, and some to spare."""
    needs: Counter[str] = Counter()
    for p in payments:
        # What a funded user pays in the run's currency (a request declined or refused moves nothing;
        # an exchange that sells USD is funded in USD: `pm_tools.demo.exchange`).
        payer, home = p.payer, p.currency is None
        if isinstance(payer, User) and payer.funded and home and p.expected[0] in api.TERMINAL_STATES:
            # The demo's fee rules price P2P payments only (the merchant pays its own commission).
            fees = sum(demo_fees(p.amount).values()) if p.type == "P2P" else 0
            needs[payer.id] += p.amount + fees
    return [
        Planned(
            key=f"{run_id}:fund:{u.id}",
            scenario="funding",
            type="ADJUSTMENT",
            amount=needs[u.id] + rng.randint(100, 2_000) * 100,
            payer=None,
            payee=u,
            comment="pm demo: opening balance",
        )
        for u in users
        if u.funded
    ]
