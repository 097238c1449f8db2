"""The chaos run's traffic: a seeded mix of every implemented intent type, sent through the gateway.

The plan (the same for the same seed and size): ADJUSTMENT funding of every funded THB wallet first
(and a few debits), then, shuffled, P2P between funded wallets and some from wallets never funded
(INSUFFICIENT_FUNDS), PROMPTPAY_WITHDRAWAL to a PromptPay mobile number with some of the IPPS
sandbox's fault amounts and proxy values, and SBP_TOPUP into RUB wallets (the QP sandbox pays every
QR by itself; some ask for `sandbox-fault=expire` in their comment and expire).

Every request is signed and carries its own Idempotency-Key; a 503 or a connection error is sent
again with the SAME key (so a request that committed before its answer was lost is recognised, not
doubled), until a deadline. 503 `backpressure` answers are counted as back-pressure refusals. A 500,
or a 401 calling our single-use nonce replayed, is sent again too (the same key makes that safe) and
kept as a finding: a backing service that is away must be a 503, and a valid request is not refused.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import msgspec

from pm_client import api as http_api
from pm_client.client import PMAuth
from pm_sandbox_ipps.values import MAGIC_AMOUNTS, MAGIC_SUFFIXES

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
REQUEST_DEADLINE_S = 180.0


@dataclass(frozen=True)
class Planned:
    key: str
    """Its Idempotency-Key."""
    scenario: str
    body: http_api.CreateIntent


@dataclass(frozen=True)
class Plan:
    thb_users: list[str]
    rub_users: list[str]
    funding: list[Planned]
    """Sent first, and followed until they settle, so the payments after them find the money."""
    intents: list[Planned]
    fee_rules: list[http_api.FeeRuleIn]


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
    return [*p2p_fee_rules(f"{prefix}p2p-", prefix, 10_000), withdrawals]


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
    needs: Counter[str] = field(default_factory=Counter)


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


# Each intent's scenario: the first whose bound the seeded roll is under (the mix of the plan).
_SCENARIOS: tuple[tuple[float, Callable[[_Draft, int], Planned]], ...] = (
    (0.50, _p2p),
    (0.56, _p2p_from_empty),
    (0.80, _withdrawal),
    (0.96, _topup),
    (1.00, _debit),
)


def _funding(d: _Draft, owner: str) -> Planned:
    return Planned(
        f"{d.prefix}fund-{owner}",
        "funding",
        http_api.CreateIntent(
            type="ADJUSTMENT",
            amount=d.needs[owner] + d.rng.randint(1_000, 50_000),
            currency="THB",
            from_=http_api.OperatorParty(),
            to=http_api.UserParty(id=owner),
            from_name="PM operator",
            comment="chaos funding",
        ),
    )


def plan(seed: int, count: int, run_id: str) -> Plan:
    """`count` intents (at least 20) for this seed; `run_id` makes keys and owners unique to the run."""
    rng = random.Random(seed)
    count = max(count, 20)
    prefix = f"c{run_id}-"
    funded = [f"{prefix}u{i:03d}" for i in range(max(6, count // 12))]
    empty = [f"{prefix}empty{i}" for i in range(3)]
    rub = [f"{prefix}rub{i:02d}" for i in range(max(3, count // 30))]
    draft = _Draft(rng, prefix, funded, empty, rub)
    body: list[Planned] = []
    for n in range(count - len(funded)):
        roll = rng.random()
        scenario = next(make for bound, make in _SCENARIOS if roll < bound)
        body.append(scenario(draft, n))
    funding = [_funding(draft, owner) for owner in funded]
    return Plan(funded + empty, rub, funding, body, _fee_rules(prefix))


@dataclass
class Accepted:
    intent_id: str
    planned: Planned
    accepted_at: float
    """Wall-clock time of the answer that accepted it."""
    attempts: int


@dataclass
class LoadStats:
    accepted: list[Accepted] = field(default_factory=list)
    backpressure: int = 0
    """503 `backpressure` answers (each sent again with the same key)."""
    unavailable: int = 0
    """Other 503 answers (a backing service down: Redis or PostgreSQL restarting)."""
    connection_errors: int = 0
    """Requests without an answer (the gateway killed or restarting), sent again with the same key."""
    refused: list[str] = field(default_factory=list)
    """Planned intents the gateway refused outright (a 4xx or 500), or never accepted by the deadline."""
    retried: int = 0
    """Intents accepted only after more than one attempt."""
    server_errors: list[str] = field(default_factory=list)
    """Spurious refusals of a valid request: a 500 (or another 5xx but 503; the gateway promises 503
    when a backing service is away), or 401 `auth_replayed_nonce` for a nonce sent once. Each is sent
    again with the same key, as a careful client would, and kept as a finding."""


_ENCODER = msgspec.json.Encoder()


def client(base_url: str, key_id: str, secret: str, connections: int = 64) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        auth=PMAuth(key_id, secret),
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )


def _problem_code(response: httpx.Response) -> str:
    try:
        code = response.json().get("code")
    except ValueError:
        return ""
    return str(code) if code else ""


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(1.0, max(0.05, float(response.headers.get("Retry-After", "0.2"))))
    except ValueError:
        return 0.2


async def submit(
    http: httpx.AsyncClient, p: Planned, stats: LoadStats, rng: random.Random
) -> Accepted | None:
    """POST one intent until accepted (same key every time); None when refused or past the deadline."""
    content = _ENCODER.encode(p.body)
    deadline = time.monotonic() + REQUEST_DEADLINE_S
    attempt = 0
    while time.monotonic() < deadline:
        attempt += 1
        try:
            response = await http.post("/v1/intents", content=content, headers={"Idempotency-Key": p.key})
        except httpx.TransportError:
            stats.connection_errors += 1
            await asyncio.sleep(0.2 + rng.random() * 0.3)
            continue
        if response.status_code in (200, 201, 202):
            if attempt > 1:
                stats.retried += 1
            return Accepted(str(response.json()["id"]), p, time.time(), attempt)
        if response.status_code == 503:
            if _problem_code(response) == "backpressure":
                stats.backpressure += 1
            else:
                stats.unavailable += 1
            await asyncio.sleep(_retry_after(response) * (0.5 + rng.random()))
            continue
        spurious = response.status_code >= 500 or (
            response.status_code == 401 and _problem_code(response) == "auth_replayed_nonce"
        )
        if spurious:
            # A 500, or a nonce we used once called replayed (the gateway's SET NX of it retried after
            # a lost reply): nothing was accepted, and the same key makes sending again safe.
            request_id = response.headers.get("X-Request-Id", "?")
            stats.server_errors.append(
                f"{p.key} ({p.scenario}): HTTP {response.status_code} request {request_id} at "
                f"{time.strftime('%H:%M:%S')}: {response.text[:200]}"
            )
            await asyncio.sleep(0.3 + rng.random() * 0.3)
            continue
        stats.refused.append(f"{p.key} ({p.scenario}): HTTP {response.status_code} {response.text[:300]}")
        return None
    stats.refused.append(f"{p.key} ({p.scenario}): not accepted within {REQUEST_DEADLINE_S:g}s")
    return None


async def send_all(
    http: httpx.AsyncClient,
    planned: list[Planned],
    concurrency: int,
    stats: LoadStats,
    seed: int,
    on_accept: Callable[[int], None] = lambda n: None,
    rate: float | None = None,
) -> None:
    """Send `planned` in order from `concurrency` workers, at most `rate` new intents a second (open
    loop: the n-th is not sent before n / rate seconds); `on_accept` hears the running accepted count."""
    queue = list(reversed(planned))
    began = time.monotonic()
    sent = 0

    async def worker(index: int) -> None:
        nonlocal sent
        rng = random.Random(seed * 1000 + index)
        while queue:
            p = queue.pop()
            if rate:
                due = began + sent / rate
                sent += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            done = await submit(http, p, stats, rng)
            if done is not None:
                stats.accepted.append(done)
                on_accept(len(stats.accepted))

    async with asyncio.TaskGroup() as tasks:
        for index in range(min(concurrency, len(planned))):
            tasks.create_task(worker(index))


async def request_until(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: msgspec.Struct,
    ok: frozenset[int],
    timeout: float = 60.0,
) -> httpx.Response:
    """An admin or wallet request sent until it answers one of `ok` (a 202 wallet is asked again)."""
    content = _ENCODER.encode(body)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = await http.request(method, path, content=content)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code in ok:
                return response
            last = f"HTTP {response.status_code} {response.text[:300]}"
            if response.status_code not in (202, 503):
                break
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{method} {path} failed: {last}")


async def open_wallets(
    http: httpx.AsyncClient, owners: list[str], currency: str, concurrency: int = 8
) -> None:
    queue = list(owners)

    async def worker() -> None:
        while queue:
            owner = queue.pop()
            body = http_api.OpenWallet(owner_kind="user", owner_id=owner, currency=currency)  # type: ignore[arg-type]
            await request_until(http, "POST", "/v1/wallets", body, frozenset({200, 201}))

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, len(owners))):
            tasks.create_task(worker())
