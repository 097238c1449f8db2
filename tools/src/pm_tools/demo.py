"""`pm demo`'s traffic: a realistic mix of wallets, funding and payments through a running gateway.

One run, over signed HTTP only:

1. opens `users` wallets (`demo-<run>-<n>`, new every run) and funds all but `unfunded` of them with
   ADJUSTMENT intents (operator → user), each for more than the payments it will make plus fees;
2. installs the demo fee rules (`demo-p2p-pre`, `demo-p2p-post`: a new version each run), which only
   price payments between `demo-…` wallets, so other traffic is never charged by them;
3. sends `payments` P2P intents from `concurrency` workers, each submitting one and waiting for it to
   be terminal (`GET` with `Prefer: wait`) before the next. Most go between funded wallets and must
   settle; some come from an unfunded wallet (INSUFFICIENT_FUNDS) or go to a wallet that was never
   opened (ACCOUNT_NOT_FOUND). Unfunded wallets never receive, so their failures do not depend on
   the order payments happen in;
4. with `withdrawals`, sends PromptPay withdrawals from funded wallets to mobile numbers through
   adapter-ipps and its sandbox: they must settle, but for about one in eight to a number PromptPay
   does not know (PAYEE_INVALID, the hold given back);
5. reads every wallet back and compares it with what the settled intents moved.

Whatever did not go as its scenario says (a payment that should have settled and did not, fees other
than the demo rules', an intent still open, a balance that does not add up) is a `problem`: the
summary is `ok` only when there is none.
"""

from __future__ import annotations

import asyncio
import math
import random
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypeVar, cast, get_args

import httpx
import msgspec

from pm_client import api as http_api
from pm_client.client import PMAuth, PMClient, PMError
from pm_sandbox_ipps.values import MAGIC_SUFFIXES

T = TypeVar("T")

CURRENCIES: tuple[str, ...] = get_args(get_args(http_api.Currency)[0])

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

Scenario = Literal["funding", "settles", "unfunded-payer", "no-payee-wallet", "withdrawal", "refused-payee"]
# What each scenario must end as: (state, failure code).
EXPECTED: dict[str, tuple[str, str | None]] = {
    "funding": ("SETTLED", None),
    "settles": ("SETTLED", None),
    "unfunded-payer": ("FAILED", "INSUFFICIENT_FUNDS"),
    "no-payee-wallet": ("FAILED", "ACCOUNT_NOT_FOUND"),
    # PromptPay withdrawals through adapter-ipps and the IPPS sandbox; a mobile number ending in 404
    # is one the sandbox's registry does not know (psp-protocols, the simulator's magic values).
    "withdrawal": ("SETTLED", None),
    "refused-payee": ("FAILED", "PAYEE_INVALID"),
}
UNKNOWN_PROXY = "0812345404"
# Mobile numbers the IPPS sandbox refuses at inquiry: a demo payee must not end so by chance.
_REFUSING_SUFFIXES = tuple(MAGIC_SUFFIXES)

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


class DemoError(Exception):
    """The demo could not run (as opposed to running and finding problems); `exit_code` says why."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class GatewayUnavailableError(DemoError):
    """Nothing answers at the gateway's URL (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)


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


@dataclass(frozen=True)
class User:
    id: str
    name: str
    funded: bool


@dataclass(frozen=True)
class Planned:
    """One intent the demo sends, and what it must end as."""

    key: str
    """Its idempotency key."""
    scenario: Scenario
    type: Literal["P2P", "ADJUSTMENT", "PROMPTPAY_WITHDRAWAL"]
    amount: int
    payer: User | None  # None: the operator (funding)
    payee: User | None  # None: a PromptPay mobile number (`proxy`)
    comment: str = ""
    proxy: str | None = None

    @property
    def expected(self) -> tuple[str, str | None]:
        return EXPECTED[self.scenario]


@dataclass
class Outcome:
    planned: Planned
    intent: http_api.Intent | None = None
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

    def fees(self) -> list[http_api.Fee]:
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
                    "expected": _expected_text(sc),
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


def _expected_text(scenario: str) -> str:
    state, code = EXPECTED[scenario]
    return f"{state} {code}" if code else state


def demo_fees(amount: int) -> dict[str, int]:
    """The fees the demo rules charge a payment between demo wallets, per rule id (0s left out)."""
    fees = {
        PRE_RULE: min(amount * PRE_PERCENT // 100, PRE_CAP),
        POST_RULE: POST_FLAT if amount >= POST_FROM else 0,
    }
    return {rule: fee for rule, fee in fees.items() if fee}


def fee_rules() -> list[http_api.FeeRuleIn]:
    """The demo's fee rules, as `POST /v1/admin/fee-rules` bodies."""
    pre_amount = f"intent.amount * {PRE_PERCENT} / 100"
    return [
        http_api.FeeRuleIn(
            rule_id=PRE_RULE,
            operation_type="P2P",
            condition=_DEMO_ONLY,
            amount=f"{pre_amount} < {PRE_CAP} ? {pre_amount} : {PRE_CAP}",
            timing="PRE",
            max_fee=PRE_CAP,
            priority=10,
            description=f"pm demo: {PRE_PERCENT}% of a payment between demo wallets, at most {PRE_CAP}",
        ),
        http_api.FeeRuleIn(
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
                # Whole baht and never 500.00: amounts with satang (40,001, 20,003 …) and 50,000 are
                # the IPPS sandbox's fault triggers.
                amount=rng.choice([b for b in range(100, 3_001, 50) if b != 500]) * 100,
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
        if p.payer is not None and p.payer.funded:
            # The demo's fee rules price P2P payments only.
            fees = sum(demo_fees(p.amount).values()) if p.type == "P2P" else 0
            needs[p.payer.id] += p.amount + fees
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


def _body(p: Planned, currency: str) -> http_api.CreateIntent:
    source: http_api.Party = (
        http_api.OperatorParty() if p.payer is None else http_api.UserParty(id=p.payer.id)
    )
    target: http_api.Party
    if p.payee is not None:
        target, to_name = http_api.UserParty(id=p.payee.id), p.payee.name
    else:
        assert p.proxy is not None, "a withdrawal names its PromptPay number"
        target, to_name = (
            http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=p.proxy),
            f"PromptPay {p.proxy}",
        )
    return http_api.CreateIntent(
        type=p.type,
        amount=p.amount,
        currency=cast(http_api.Currency, currency),  # one of CURRENCIES: DemoOptions.check
        from_=source,
        to=target,
        from_name=p.payer.name if p.payer is not None else "PM operator",
        to_name=to_name,
        comment=p.comment or None,
        metadata={"demo": "pm demo"},
    )


# --- talking to the gateway -----------------------------------------------------------------------


def _latency(intent: http_api.Intent) -> float | None:
    created = next((e.at for e in intent.timeline if e.state == "CREATED"), intent.created_at)
    ended = next((e.at for e in reversed(intent.timeline) if e.state in http_api.TERMINAL_STATES), None)
    if created is None or ended is None:
        return None
    return (ended - created).total_seconds()


async def _bounded(concurrency: int, items: Sequence[T], work: Callable[[T], Awaitable[None]]) -> None:
    """`work(item)` for every item, at most `concurrency` at a time (closed loop: one worker per slot).

    The first DemoError stops every worker and is raised as it is (not in an exception group).
    """
    queue = list(reversed(items))
    failures: list[DemoError] = []

    async def worker() -> None:
        while queue and not failures:
            try:
                await work(queue.pop())
            except DemoError as exc:
                failures.append(exc)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, len(items))):
            tasks.create_task(worker())
    if failures:
        raise failures[0]


def _refused(exc: PMError) -> DemoError:
    if exc.status in (401, 403):
        return DemoError(f"the gateway refused the key ({exc}); use an admin key (`pm up` writes one)", 2)
    return DemoError(f"the gateway answered {exc}")


class Demo:
    def __init__(self, client: PMClient, admin: httpx.AsyncClient, options: DemoOptions) -> None:
        self.client = client
        self.admin = admin
        self.options = options

    async def preflight(self) -> None:
        """The gateway answers /readyz with 200, else GatewayUnavailableError."""
        try:
            response = await self.admin.get("/readyz", timeout=5.0)
        except httpx.TransportError as exc:
            raise GatewayUnavailableError(
                f"the gateway at {self.admin.base_url} does not answer ({type(exc).__name__}: {exc}); "
                "is `pm up` running?"
            ) from exc
        if response.status_code != 200:
            raise GatewayUnavailableError(
                f"the gateway at {self.admin.base_url} is not ready "
                f"({response.status_code} {response.text[:200]})"
            )

    async def open_wallet(self, user: User) -> None:
        # 202 means the ledger-writer has not opened it yet: asking again answers once it has.
        deadline = time.monotonic() + self.options.wait_s
        while True:
            try:
                await self.client.open_wallet(user.id, self.options.currency)
                return
            except PMError as exc:
                if exc.status != 202:
                    raise _refused(exc) from exc
            except httpx.TransportError as exc:
                raise _lost(self.admin, exc) from exc
            if time.monotonic() > deadline:
                raise DemoError(f"wallet {user.id} still not open after {self.options.wait_s:.0f}s")
            await asyncio.sleep(0.2)

    async def install_fee_rules(self) -> None:
        encoder = msgspec.json.Encoder()
        for rule in fee_rules():
            try:
                response = await self.admin.post(
                    "/v1/admin/fee-rules",
                    content=encoder.encode(rule),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.TransportError as exc:
                raise _lost(self.admin, exc) from exc
            if response.status_code != 201:
                problem = PMError(response.status_code, _problem(response))
                raise _refused(problem)

    async def send(self, outcome: Outcome) -> None:
        """Submit one intent and wait until it is terminal (or `wait_s` passes)."""
        p = outcome.planned
        try:
            created = await self.client.create_intent(_body(p, self.options.currency), idempotency_key=p.key)
            intent = await self.client.wait_intent(created.id, timeout=self.options.wait_s)
        except PMError as exc:
            if exc.status in (401, 403):
                raise _refused(exc) from exc
            outcome.error = str(exc)
            return
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        outcome.intent = intent
        if intent.status in http_api.TERMINAL_STATES:
            outcome.latency_s = _latency(intent)
        else:
            outcome.error = f"still {intent.status} after {self.options.wait_s:.0f}s"

    async def wallet(self, user: User, expected: int) -> WalletCheck:
        try:
            wallet = await self.client.get_wallet(user.id)
        except PMError as exc:
            raise _refused(exc) from exc
        except httpx.TransportError as exc:
            raise _lost(self.admin, exc) from exc
        balance = next((b for b in wallet.balances if b.currency == self.options.currency), None)
        return WalletCheck(
            user.id,
            user.name,
            user.funded,
            expected,
            balance.posted if balance else None,
            balance.pending if balance else None,
            balance.available if balance else None,
        )


def _lost(http: httpx.AsyncClient, exc: httpx.TransportError) -> GatewayUnavailableError:
    return GatewayUnavailableError(f"lost the gateway at {http.base_url}: {type(exc).__name__}: {exc}")


def _problem(response: httpx.Response) -> http_api.Problem | None:
    try:
        return msgspec.json.decode(response.content, type=http_api.Problem)
    except msgspec.DecodeError:
        return None


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
        if o.intent is None or o.state not in http_api.TERMINAL_STATES:
            found.append(f"{what}: no terminal state ({o.error})")
            continue
        got = (o.state, o.failure_code)
        if got != p.expected:
            found.append(
                f"{what} {o.intent.id}: expected {_expected_text(p.scenario)}, "
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


async def run_demo(gateway: str, key_id: str, secret: str, options: DemoOptions) -> DemoSummary:
    """One demo run against the gateway at `gateway`, signed with an admin key.

    Raises GatewayUnavailableError when nothing answers there, DemoError when the run cannot go on
    (the key is refused, a wallet does not open); otherwise returns the summary, problems included.
    """
    options.check()
    run_id = options.run_id or secrets.token_hex(3)
    rng = random.Random(options.seed)
    users, payments, _ghost = plan(options, run_id, rng)
    fundings = funding(users, payments, run_id, rng)
    # A connection per worker, so none waits for the pool while the others long-poll.
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=options.concurrency + 4))
    async with (
        PMClient(gateway, key_id, secret, transport=transport) as client,
        httpx.AsyncClient(base_url=gateway, auth=PMAuth(key_id, secret), timeout=35.0) as admin,
    ):
        demo = Demo(client, admin, options)
        await demo.preflight()
        await demo.install_fee_rules()
        rules_at = time.monotonic()
        await _bounded(options.concurrency, users, demo.open_wallet)
        funded = [Outcome(p) for p in fundings]
        await _bounded(options.concurrency, funded, demo.send)
        await asyncio.sleep(max(0.0, rules_at + options.rules_settle_s - time.monotonic()))
        paid = [Outcome(p) for p in payments]
        started = time.monotonic()
        await _bounded(options.concurrency, paid, demo.send)
        payments_s = time.monotonic() - started
        outcomes = funded + paid
        expected = expected_balances(users, outcomes)
        wallets = [await demo.wallet(u, expected[u.id]) for u in users]
    return DemoSummary(
        run_id, options.currency, users, outcomes, wallets, payments_s, problems(outcomes, wallets)
    )
