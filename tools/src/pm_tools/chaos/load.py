"""The chaos run's traffic plan: a seeded mix of every implemented intent type (`pm_tools.chaos.send`
sends it through the gateway).

The plan (the same for the same seed and size): ADJUSTMENT funding of every funded THB wallet and of
the run's merchant first (and a few debits), then, shuffled, P2P between funded wallets and some from
wallets never funded (INSUFFICIENT_FUNDS), PROMPTPAY_WITHDRAWAL to a PromptPay mobile number with some
of the IPPS sandbox's fault amounts and proxy values, SBP_TOPUP into RUB wallets (the QP sandbox pays
every QR by itself; some ask for `sandbox-fault=expire` in their comment and expire), and the
merchant's traffic: MINIAPP_CREDIT from its account to funded wallets (a few for more than it could
ever hold: INSUFFICIENT_FUNDS) and MINIAPP_CHARGE, each a payment request the user confirms (some
from wallets never funded), with the merchant's commission on every charge; and FX_EXCHANGE at the
run's USD/THB rate by users who also hold a USD wallet, THB for USD and back (each a quote asked when
it is sent, then the exchange), with a small fee of their own, and a few that buy more USD than the
liquidity could ever hold (LIQUIDITY_INSUFFICIENT). The operator funds the liquidity accounts in THB
and USD first, for what the exchanges buy out of them.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal

from pm_client import api as http_api
from pm_client import fx_api, merchant_api
from pm_sandbox_ipps.values import MAGIC_AMOUNTS, MAGIC_SUFFIXES
from pm_shared.fx import pricing

# The IPPS sandbox's magic amounts and what each asks for.
IPPS_FAULT_AMOUNTS = MAGIC_AMOUNTS
MOBILE = "0812345678"
# Proxy values the IPPS sandbox refuses at inquiry (PROXY_NOT_FOUND, ACCOUNT_CLOSED).
BAD_PROXIES = tuple(
    f"0812345{suffix}"
    for suffix, code in MAGIC_SUFFIXES.items()
    if code in ("PROXY_NOT_FOUND", "ACCOUNT_CLOSED")
)
QP_EXPIRE = "sandbox-fault=expire"
MAX_CHARGE = 50_000
"""The mini-app's cap on one charge; every planned charge is within it."""
OVERDRAW = 10**11
"""A credit larger than everything the merchant could ever hold in a run: the ledger refuses it."""
COMMISSION_PERMILLE = 15
RATE = fx_api.SetRate(pair="USD/THB", rate="35.8125", spread_bps=50, source="pm chaos")
"""The run's one rate: every quote is priced at it, so the plan knows what each exchange buys."""
QUOTE_PENDING = uuid.UUID(int=0)
"""The `quoteId` of a planned exchange until its quote is asked, when it is sent (`send.submit`)."""
FX_FEE = 100
"""A flat PRE fee on each exchange, in the sold currency (so exchanges have fee legs too)."""

Via = Literal["admin", "merchant", "charge"]
"""How an intent is made: POST /v1/intents with the admin key or the merchant's; or a charge: the
merchant's payment request, which the user confirms at /v1/me."""


@dataclass(frozen=True)
class Shop:
    """The run's merchant and its mini-app (credits and charges, in THB)."""

    merchant_id: str
    miniapp_id: str

    def onboarding(self) -> merchant_api.CreateMerchant:
        return merchant_api.CreateMerchant(
            merchant_id=self.merchant_id, name="Chaos Coffee", currencies=["THB"]
        )

    def miniapp(self) -> merchant_api.CreateMiniapp:
        return merchant_api.CreateMiniapp(
            miniapp_id=self.miniapp_id,
            merchant_id=self.merchant_id,
            name="Chaos Coffee",
            operations=["MINIAPP_CHARGE", "MINIAPP_CREDIT"],
            max_charge={"THB": MAX_CHARGE},
        )

    def commission(self, rule_id: str) -> http_api.FeeRuleIn:
        """1.5 % of each of its charges, paid by the merchant (the charge's target)."""
        return http_api.FeeRuleIn(
            rule_id=rule_id,
            operation_type="MINIAPP_CHARGE",
            condition=f'intent.target.kind == "merchant" && intent.target.id == "{self.merchant_id}"',
            amount=f"intent.amount * {COMMISSION_PERMILLE} / 1000",
            timing="POST",
            payer="target",
            max_fee=MAX_CHARGE,
            priority=1,
        )


@dataclass(frozen=True)
class Planned:
    key: str
    """Its Idempotency-Key (a charge's payment request's)."""
    scenario: str
    body: http_api.CreateIntent
    """The intent (for a charge: the one the user's confirmation makes; for an exchange: with
    QUOTE_PENDING for the quote asked when it is sent)."""
    via: Via = "admin"
    quote: fx_api.CreateQuote | None = None
    """An exchange's quote, asked (admin key) just before the exchange is made."""


@dataclass(frozen=True)
class Plan:
    thb_users: list[str]
    rub_users: list[str]
    usd_users: list[str]
    """THB users who also hold a USD wallet and exchange."""
    funding: list[Planned]
    """Sent first, and followed until they settle, so the payments after them find the money."""
    intents: list[Planned]
    fee_rules: list[http_api.FeeRuleIn]
    shop: Shop
    rates: list[fx_api.SetRate] = field(default_factory=lambda: [RATE])


def p2p_fee_rules(rule_prefix: str, payer_prefix: str, post_from: int) -> list[http_api.FeeRuleIn]:
    """Fees on payments by users whose ids start with `payer_prefix`: 1 % PRE (at most 300), and a
    flat 200 POST from `post_from` up; rule ids `<rule_prefix>pre` and `<rule_prefix>post`."""
    mine = f'intent.source.kind == "user" && intent.source.id.startsWith("{payer_prefix}")'
    return [
        http_api.FeeRuleIn(
            rule_id=f"{rule_prefix}pre",
            operation_type="P2P",
            condition=mine,
            amount="intent.amount / 100 < 300 ? intent.amount / 100 : 300",
            timing="PRE",
            max_fee=300,
            priority=1,
        ),
        http_api.FeeRuleIn(
            rule_id=f"{rule_prefix}post",
            operation_type="P2P",
            condition=f"{mine} && intent.amount >= {post_from}",
            amount="200",
            timing="POST",
            max_fee=200,
            priority=2,
        ),
    ]


def _fee_rules(prefix: str) -> list[http_api.FeeRuleIn]:
    """A PRE and a POST fee on P2P and a flat PRE fee on withdrawals, so settled intents have fee legs."""
    withdrawals = http_api.FeeRuleIn(
        rule_id=f"{prefix}ipps-pre",
        operation_type="PROMPTPAY_WITHDRAWAL",
        condition=f'intent.source.kind == "user" && intent.source.id.startsWith("{prefix}")',
        amount="500",
        timing="PRE",
        max_fee=500,
        priority=1,
    )
    exchanges = http_api.FeeRuleIn(
        rule_id=f"{prefix}fx-pre",
        operation_type="FX_EXCHANGE",
        condition=f'intent.source.kind == "user" && intent.source.id.startsWith("{prefix}")',
        amount=str(FX_FEE),
        timing="PRE",
        max_fee=FX_FEE,
        priority=1,
    )
    return [*p2p_fee_rules(f"{prefix}p2p-", prefix, 10_000), withdrawals, exchanges]


MAX_FEES = 1_000
"""More than any one intent's fees under `_fee_rules`."""


def _amount(rng: random.Random, low: int, high: int) -> int:
    while True:
        amount = rng.randint(low, high)
        if amount not in IPPS_FAULT_AMOUNTS:
            return amount


@dataclass
class _Draft:
    """The state `plan` draws from: the seeded generator, the run's users, what each payer needs."""

    rng: random.Random
    prefix: str
    funded: list[str]
    empty: list[str]
    rub: list[str]
    shop: Shop
    usd: list[str] = field(default_factory=list)
    needs: Counter[str] = field(default_factory=Counter)
    """Owner id (user or merchant) → what its planned payments take from it in THB, at most."""
    needs_usd: Counter[str] = field(default_factory=Counter)
    """User id → the dollars its exchanges sell, fees included."""
    buys: Counter[str] = field(default_factory=Counter)
    """Currency → what the exchanges buy out of its liquidity account."""
    sold_usd: int = 0
    """The dollars the exchanges put into the USD liquidity account (their principal), at most."""


def _p2p(d: _Draft, n: int) -> Planned:
    payer, payee = d.rng.sample(d.funded, 2)
    amount = _amount(d.rng, 100, 20_000)
    d.needs[payer] += amount + MAX_FEES
    intent = http_api.CreateIntent(
        type="P2P",
        amount=amount,
        currency="THB",
        from_=http_api.UserParty(id=payer),
        to=http_api.UserParty(id=payee),
        from_name=payer,
        to_name=payee,
        comment=f"chaos payment {n}",
    )
    return Planned(f"{d.prefix}{n}", "p2p", intent)


def _p2p_from_empty(d: _Draft, n: int) -> Planned:
    payer, payee = d.rng.choice(d.empty), d.rng.choice(d.funded)
    intent = http_api.CreateIntent(
        type="P2P",
        amount=_amount(d.rng, 100, 20_000),
        currency="THB",
        from_=http_api.UserParty(id=payer),
        to=http_api.UserParty(id=payee),
        comment="from an empty wallet",
    )
    return Planned(f"{d.prefix}{n}", "p2p-empty", intent)


def _withdrawal(d: _Draft, n: int) -> Planned:
    """To a PromptPay number; some ask for one of the IPPS sandbox's faults, some name a refused proxy."""
    payer = d.rng.choice(d.funded)
    fault = d.rng.random()
    proxy, scenario = MOBILE, "withdrawal"
    if fault < 0.30:
        amount = d.rng.choice(sorted(IPPS_FAULT_AMOUNTS))
        scenario = f"withdrawal-{IPPS_FAULT_AMOUNTS[amount]}"
    else:
        amount = _amount(d.rng, 1_000, 30_000)
        if fault < 0.38:
            proxy = d.rng.choice(BAD_PROXIES)
            scenario = "withdrawal-bad-proxy"
    d.needs[payer] += amount + MAX_FEES
    intent = http_api.CreateIntent(
        type="PROMPTPAY_WITHDRAWAL",
        amount=amount,
        currency="THB",
        from_=http_api.UserParty(id=payer),
        to=http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=proxy),
        comment=f"chaos withdrawal {n}",
    )
    return Planned(f"{d.prefix}{n}", scenario, intent)


def _topup(d: _Draft, n: int) -> Planned:
    payee = d.rng.choice(d.rub)
    expire = d.rng.random() < 0.2
    intent = http_api.CreateIntent(
        type="SBP_TOPUP",
        amount=_amount(d.rng, 1_000, 100_000),
        currency="RUB",
        from_=http_api.SbpParty(),
        to=http_api.UserParty(id=payee),
        comment=f"chaos top-up {n}" + (f" {QP_EXPIRE}" if expire else ""),
    )
    return Planned(f"{d.prefix}{n}", "topup-expire" if expire else "topup", intent)


def _debit(d: _Draft, n: int) -> Planned:
    owner = d.rng.choice(d.funded)
    amount = _amount(d.rng, 100, 5_000)
    d.needs[owner] += amount
    intent = http_api.CreateIntent(
        type="ADJUSTMENT",
        amount=amount,
        currency="THB",
        from_=http_api.UserParty(id=owner),
        to=http_api.OperatorParty(),
        to_name="PM operator",
        comment="chaos debit",
    )
    return Planned(f"{d.prefix}{n}", "adjustment-debit", intent)


def _credit(d: _Draft, n: int, *, overdraw: bool = False) -> Planned:
    """The merchant credits a funded wallet through its mini-app (its own key)."""
    payee = d.rng.choice(d.funded)
    amount = OVERDRAW if overdraw else _amount(d.rng, 100, 20_000)
    if not overdraw:
        d.needs[d.shop.merchant_id] += amount
    intent = http_api.CreateIntent(
        type="MINIAPP_CREDIT",
        amount=amount,
        currency="THB",
        from_=http_api.MerchantParty(id=d.shop.merchant_id),
        to=http_api.UserParty(id=payee),
        miniapp_id=d.shop.miniapp_id,
        comment=f"chaos cashback {n}",
    )
    return Planned(f"{d.prefix}{n}", "credit-overdraw" if overdraw else "credit", intent, "merchant")


def _credit_overdraw(d: _Draft, n: int) -> Planned:
    return _credit(d, n, overdraw=True)


def _charge(d: _Draft, n: int, *, empty: bool = False) -> Planned:
    """A payment request the user confirms: user → merchant, the merchant paying its commission."""
    payer = d.rng.choice(d.empty if empty else d.funded)
    amount = _amount(d.rng, 100, 20_000)
    if not empty:
        d.needs[payer] += amount
    intent = http_api.CreateIntent(
        type="MINIAPP_CHARGE",
        amount=amount,
        currency="THB",
        from_=http_api.UserParty(id=payer),
        to=http_api.MerchantParty(id=d.shop.merchant_id),
        miniapp_id=d.shop.miniapp_id,
        comment=f"chaos order {n}",
    )
    return Planned(f"{d.prefix}{n}", "charge-empty" if empty else "charge", intent, "charge")


def _charge_from_empty(d: _Draft, n: int) -> Planned:
    return _charge(d, n, empty=True)


def _price(sell: str, buy: str, amount: int) -> pricing.Price:
    rate = pricing.Rate(pricing.Pair.parse(RATE.pair), Decimal(RATE.rate), RATE.spread_bps)
    return pricing.selling(rate, sell, buy, amount, amount_max=http_api.AMOUNT_MAX)


def _exchange_of(
    d: _Draft, n: int, user: str, sell: http_api.Currency, amount: int, scenario: str
) -> Planned:
    """`user` sells `amount` of `sell` for the other of THB and USD (quoted when sent)."""
    buy: http_api.Currency = "USD" if sell == "THB" else "THB"
    party = http_api.UserParty(id=user)
    intent = http_api.CreateIntent(
        type="FX_EXCHANGE",
        amount=amount,
        currency=sell,
        from_=party,
        to=party,
        comment=f"chaos exchange {n}",
        quote_id=QUOTE_PENDING,
    )
    quote = fx_api.CreateQuote(
        owner_id=user, sell=fx_api.QuoteSide(currency=sell, amount=amount), buy=fx_api.QuoteSide(currency=buy)
    )
    return Planned(f"{d.prefix}{n}", scenario, intent, quote=quote)


def _exchange(d: _Draft, n: int) -> Planned:
    """THB for USD, out of the USD liquidity (funded for it)."""
    user, amount = d.rng.choice(d.usd), _amount(d.rng, 1_000, 50_000)
    d.needs[user] += amount + MAX_FEES
    d.buys["USD"] += _price("THB", "USD", amount).buy_amount
    return _exchange_of(d, n, user, "THB", amount, "fx")


def _exchange_back(d: _Draft, n: int) -> Planned:
    """USD for THB, out of the THB liquidity; its principal goes into the USD liquidity."""
    user, amount = d.rng.choice(d.usd), _amount(d.rng, 100, 2_000)
    d.needs_usd[user] += amount + MAX_FEES
    priced = _price("USD", "THB", amount)
    d.buys["THB"] += priced.buy_amount
    d.sold_usd += priced.principal
    return _exchange_of(d, n, user, "USD", amount, "fx-back")


def _beyond_liquidity(d: _Draft, n: int, usd_liquidity: int) -> Planned:
    """THB for more USD than the USD liquidity could ever hold (its funding and every dollar the
    exchanges sell into it): LIQUIDITY_INSUFFICIENT, whatever the order the exchanges happen in. Its
    user is funded for it, so only the liquidity can refuse it."""
    most = usd_liquidity + d.sold_usd
    amount = (most + 10_000) * 37  # satang: more than 35.8125 a dollar with its 0.5 % spread
    assert _price("THB", "USD", amount).buy_amount > most
    user = d.rng.choice(d.usd)
    d.needs[user] += amount + MAX_FEES
    return _exchange_of(d, n, user, "THB", amount, "fx-no-liquidity")


# Each intent's scenario: the first whose bound the seeded roll is under (the mix of the plan).
_SCENARIOS: tuple[tuple[float, Callable[[_Draft, int], Planned]], ...] = (
    (0.38, _p2p),
    (0.42, _exchange),
    (0.44, _exchange_back),
    (0.50, _p2p_from_empty),
    (0.70, _withdrawal),
    (0.82, _topup),
    (0.85, _debit),
    (0.91, _credit),
    (0.92, _credit_overdraw),
    (0.99, _charge),
    (1.00, _charge_from_empty),
)


def _funding(d: _Draft, owner: str, *, merchant: bool = False) -> Planned:
    """An ADJUSTMENT from the operator: what the owner's planned payments take, and some to spare."""
    target: http_api.Party = http_api.MerchantParty(id=owner) if merchant else http_api.UserParty(id=owner)
    return _adjustment(
        f"{d.prefix}fund-{owner}",
        "merchant-funding" if merchant else "funding",
        d.needs[owner] + d.rng.randint(1_000, 50_000),
        "THB",
        target,
    )


def _adjustment(
    key: str, scenario: str, amount: int, currency: http_api.Currency, target: http_api.Party
) -> Planned:
    intent = http_api.CreateIntent(
        type="ADJUSTMENT",
        amount=amount,
        currency=currency,
        from_=http_api.OperatorParty(),
        to=target,
        from_name="PM operator",
        comment="chaos funding",
    )
    return Planned(key, scenario, intent)


def _fx_funding(d: _Draft, usd_liquidity: int) -> list[Planned]:
    """The USD wallets of those who exchange, for the dollars they sell, and both liquidity accounts,
    for what the exchanges buy out of them (`usd_liquidity` for the USD one)."""
    wallets = [
        _adjustment(
            f"{d.prefix}fund-usd-{user}",
            "usd-funding",
            d.needs_usd[user] + d.rng.randint(1_000, 5_000),
            "USD",
            http_api.UserParty(id=user),
        )
        for user in d.usd
    ]
    thb = d.buys["THB"] + d.rng.randint(100_000, 500_000)
    return [
        *wallets,
        _adjustment(
            f"{d.prefix}fund-liquidity-THB", "liquidity-funding", thb, "THB", http_api.LiquidityParty()
        ),
        _adjustment(
            f"{d.prefix}fund-liquidity-USD",
            "liquidity-funding",
            usd_liquidity,
            "USD",
            http_api.LiquidityParty(),
        ),
    ]


def plan(seed: int, count: int, run_id: str) -> Plan:
    """`count` intents (at least 20) for this seed; `run_id` makes keys and owners unique to the run."""
    rng = random.Random(seed)
    count = max(count, 20)
    prefix = f"c{run_id}-"
    funded = [f"{prefix}u{i:03d}" for i in range(max(6, count // 12))]
    empty = [f"{prefix}empty{i}" for i in range(3)]
    rub = [f"{prefix}rub{i:02d}" for i in range(max(3, count // 30))]
    usd = funded[: max(3, count // 40)]
    shop = Shop(f"{prefix}shop", f"{prefix}app")
    draft = _Draft(rng, prefix, funded, empty, rub, shop, usd)
    body: list[Planned] = []
    # Every funded wallet, the merchant, every USD wallet and both liquidity accounts get one funding
    # each; a few exchanges go beyond the liquidity; the rest of `count` is the mix.
    beyond = max(1, count // 250)
    mix = count - len(funded) - 1 - len(usd) - 2 - beyond
    for n in range(mix):
        roll = rng.random()
        scenario = next(make for bound, make in _SCENARIOS if roll < bound)
        body.append(scenario(draft, n))
    usd_liquidity = draft.buys["USD"] + rng.randint(10_000, 50_000)
    for n in range(mix, mix + beyond):
        body.insert(rng.randint(0, len(body)), _beyond_liquidity(draft, n, usd_liquidity))
    funding = [_funding(draft, owner) for owner in funded]
    funding.append(_funding(draft, shop.merchant_id, merchant=True))
    funding += _fx_funding(draft, usd_liquidity)
    rules = [*_fee_rules(prefix), shop.commission(f"{prefix}commission")]
    return Plan(funded + empty, rub, usd, funding, body, rules, shop)
