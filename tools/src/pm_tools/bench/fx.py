"""Benchmark of currency exchange beside P2P payments: FX_EXCHANGEs settled per second, quote to SETTLED,
beside P2P intents measured in the same run the same way (goal: ≥ 70 % of P2P/s, issue 16: an
exchange is three legs on two ledgers against a payment's one), and the quote request's latency.

The fleet is the saga benchmark's (`services`: ledger-writer, orchestrators, reconciler and gateway as
real processes with their default settings, `users` funded wallets). Before the fleet starts, each user
gets a THB wallet (funded) and a USD wallet (empty: the exchanges pay into it), straight on the ledger
as the saga benchmark opens its wallets (`workload.Setup.currencies`). Once it runs, an admin key made
for the run sets the rate (`POST /v1/admin/fx/rates`, USD/THB at `RATE` with `SPREAD_BPS`) and funds
the liquidity accounts of both currencies with an ADJUSTMENT each from the operator to
`{"kind": "liquidity"}` (`LIQUIDITY`, far more than a run buys), as docs/fx.md tells an operator to.
Both types are priced by the same two fee rules (1 % before, 1.00 flat after, paid by the payer), so
the fee engine does the same work for each and the difference is the exchange's own: its quote, and
its legs on two ledgers.

Two kinds of flow (`flows`), each run by `concurrency` workers in a closed loop for `warmup_s`, then
`seconds` measured:

- an exchange: `POST /v1/fx/quotes` selling `workload.AMOUNT` THB for USD for a random user (201),
  then `POST /v1/intents` FX_EXCHANGE with that quote (202; the intent's id is the quote's), then the
  wait until the intent is terminal. The quote is inside the flow: a quote is used once and locked
  for a minute, so every exchange needs a fresh one, and leaving it out would flatter exchanges. The
  quote's round trip (sent → 201, client-side) is reported as the quote issue latency, and the latency
  from the exchange's own request to SETTLED beside the whole flow's;
- a P2P payment, the baseline: a signed `POST /v1/intents` (202), then the same wait.

The phases alternate (P2P then exchanges, then exchanges then P2P, …) for `rounds` rounds on the one
fleet, each after the tail of the one before has drained; each type's figure is its best phase.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pm_client import api, fx_api
from pm_client.client import PMAuth
from pm_tools.bench import flows, harness, merchant, model, runs, services, tables, workload
from pm_tools.bench.flows import Flow, Kind, Phase

GOAL = 0.70
"""Exchanges settled/s as a share of P2P settled/s, same run."""
P2P, FX = flows.P2P, "FX_EXCHANGE"
PAIR, RATE, SPREAD_BPS = "USD/THB", "35.8125", 50
SELL: api.Currency = "THB"
BUY: api.Currency = "USD"
LIQUIDITY = 10**11
"""Minor units of each liquidity account's funding: 1,000,000,000.00, where an exchange of
`workload.AMOUNT` (100.00 THB) buys 2.77 USD."""
QUOTES, RATES = "/v1/fx/quotes", "/v1/admin/fx/rates"
EXCHANGE = Kind(FX, "quote + exchange → CREATED (gateway)", intake_stage="exchange → CREATED (gateway)")
KINDS = (flows.PAYMENT, EXCHANGE)
GROUP = "exchange runs, closed loop (first request → SETTLED)"
"""The report's group of these stage sets (apart from the charges': each group has its own P2P)."""
JSON = {"Content-Type": "application/json"}

_quote = msgspec.json.Decoder(fx_api.Quote)


# --- before the phases --------------------------------------------------------------------------


async def _adjust(http: httpx.AsyncClient, watch: flows.Watch, intent: api.CreateIntent, key: str) -> None:
    """One admin intent, waited for until SETTLED (anything else stops the run: nothing to measure)."""
    made = await http.post(
        services.INTAKE, content=msgspec.json.encode(intent), headers={**JSON, "Idempotency-Key": key}
    )
    if made.status_code != 202:
        raise RuntimeError(f"{key}: {made.status_code} {made.text[:300]}")
    intent_id = flows.created_id(made)
    state = await watch.terminal(intent_id)
    if state != "SETTLED":
        raise RuntimeError(f"{key}: intent {intent_id} ended {state}")


async def prepare(rig: services.Rig, watch: flows.Watch) -> None:
    """The rate, set by an admin key made for the run, and both liquidity accounts funded by it."""
    admin = await merchant.admin_key(rig.dsn, rig.kek)
    async with httpx.AsyncClient(base_url=rig.fleet.gateway, auth=admin, timeout=30, trust_env=False) as http:
        rate = fx_api.SetRate(pair=PAIR, rate=RATE, spread_bps=SPREAD_BPS, source="pm bench")
        made = await http.post(RATES, content=msgspec.json.encode(rate), headers=JSON)
        if made.status_code != 201:
            raise RuntimeError(f"setting the benchmark's rate: {made.status_code} {made.text[:300]}")
        for currency in (SELL, BUY):
            funding = api.CreateIntent(
                type="ADJUSTMENT",
                amount=LIQUIDITY,
                currency=currency,
                from_=api.OperatorParty(),
                to=api.LiquidityParty(),
                comment="pm bench: FX liquidity",
            )
            await _adjust(http, watch, funding, f"bench-liquidity-{currency}")


# --- the flows ----------------------------------------------------------------------------------


def quote_body(user: str) -> bytes:
    """`POST /v1/fx/quotes`: `user` sells `workload.AMOUNT` THB for USD."""
    asked = fx_api.CreateQuote(
        owner_id=user,
        sell=fx_api.QuoteSide(currency=SELL, amount=workload.AMOUNT),
        buy=fx_api.QuoteSide(currency=BUY),
    )
    return msgspec.json.encode(asked)


def exchange_body(quote: fx_api.Quote) -> bytes:
    """`POST /v1/intents`: the FX_EXCHANGE that carries `quote` out (what it sells, its owner both sides)."""
    user = api.UserParty(id=quote.owner_id)
    intent = api.CreateIntent(
        type="FX_EXCHANGE",
        amount=quote.sell.amount,
        currency=quote.sell.currency,
        from_=user,
        to=user,
        quote_id=quote.quote_id,
        comment="pm bench",
    )
    return msgspec.json.encode(intent)


@dataclass(frozen=True)
class _Exchanges:
    users: Sequence[str]
    key: PMAuth
    watch: flows.Watch
    rng: secrets.SystemRandom

    async def __call__(self, http: httpx.AsyncClient, n: int) -> Flow:
        """A quote for a random user, the exchange that uses it, then the wait."""
        asked = time.perf_counter()
        quoted = await http.post(
            QUOTES, content=quote_body(self.rng.choice(self.users)), headers=JSON, auth=self.key
        )
        first_s = time.perf_counter() - asked
        if quoted.status_code != 201:
            return flows.refused(f"POST {QUOTES}", quoted)
        quote = _quote.decode(quoted.content)
        sent = time.time()
        made = await http.post(
            services.INTAKE, content=exchange_body(quote), headers=flows.fresh(), auth=self.key
        )
        if made.status_code != 202:
            return flows.refused(f"POST {services.INTAKE} (FX_EXCHANGE)", made)
        intent_id = flows.created_id(made)
        if intent_id != str(quote.quote_id):
            return Flow(error=f"the exchange's intent {intent_id} is not its quote's id {quote.quote_id}")
        return await flows.settle(self.watch, Flow(intent_id=intent_id, intake_sent=sent, first_s=first_s))


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FxResult:
    concurrency: int
    warmup_s: float
    seconds: float
    orchestrators: int
    users: int
    p2p: list[Phase]
    fx: list[Phase]
    """Each type's phases, in the order run."""

    @property
    def best_p2p(self) -> Phase:
        return flows.best(self.p2p)

    @property
    def best_fx(self) -> Phase:
        return flows.best(self.fx)

    @property
    def ratio(self) -> float:
        """Exchanges/s ÷ P2P/s, the best phase of each."""
        return flows.ratio(self.best_fx, self.best_p2p)

    @property
    def quote(self) -> flows.Latency | None:
        """The quote's round trip in the best exchange phase (client-side, sent → 201)."""
        return self.best_fx.first_request

    @property
    def clean(self) -> bool:
        return all(phase.clean for phase in (*self.p2p, *self.fx))

    @property
    def cpu_bound_ratio(self) -> float | None:
        """Exchanges/s ÷ P2P/s as their CPU per flow predicts it (best phases; `harness.cpu_bound_ratio`)."""
        return harness.cpu_bound_ratio(self.best_p2p.cpu_ms, self.best_fx.cpu_ms)


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    concurrency: int = 32,
    seconds: float = 5.0,
    rounds: int = 3,
    warmup_s: float = flows.WARMUP_S,
    orchestrators: int = 1,
    users: int = workload.USERS,
) -> FxResult:
    """`rounds` rounds of a P2P phase and an exchange phase (alternating which goes first), on one fleet."""
    if rounds < 1 or concurrency < 1 or users < 2:
        raise ValueError("at least one round, one worker and two wallets")
    size = (concurrency, warmup_s, seconds)
    phases: dict[str, list[Phase]] = {P2P: [], FX: []}
    setup = workload.Setup(operations=frozenset({P2P, FX}), priced=(P2P, FX), currencies=(SELL, BUY))
    async with (
        services.running(
            server_dsn, redis_url, "fx", orchestrators=orchestrators, users=users, setup=setup
        ) as rig,
        flows.watching(rig.dsn) as watch,
    ):
        await prepare(rig, watch)
        rng, key = secrets.SystemRandom(), PMAuth(*rig.key)
        operations: dict[str, flows.Operation] = {
            P2P: flows.Payments(rig.users, key, watch, rng),
            FX: _Exchanges(rig.users, key, watch, rng),
        }
        for n in range(rounds):
            for kind in KINDS if n % 2 == 0 else KINDS[::-1]:
                await runs.quiet(rig.conn, rig.redis)
                phases[kind.name].append(await flows.measure(rig, kind, operations[kind.name], size))
    return FxResult(concurrency, warmup_s, seconds, orchestrators, users, phases[P2P], phases[FX])


# --- the report ---------------------------------------------------------------------------------


def goals_met(result: FxResult) -> bool:
    return result.clean and result.ratio >= GOAL


def _pair(first: float | None, second: float | None) -> str:
    return f"{flows.ms(first)} / {flows.ms(second)}"


def table(result: FxResult) -> Table:
    """Each phase: settled/s and latency (an exchange's also from its own request, and its quote's);
    then exchanges/s ÷ P2P/s against the goal."""
    figures = ["round", "flows", "settled/s", "p50", "p95", "p99", "exchange → SETTLED p50 / p99"]
    figures += ["quote p50 / p99"]
    out = tables.table(
        f"Currency exchange beside P2P: settled/s, closed loop ({result.concurrency} concurrent flows, "
        f"{result.orchestrators} orchestrators, {result.users:,} users)",
        ["type", *figures, "generator CPU", "CPU ms per flow", "failed / unfinished / errors"],
        right=[*figures, "generator CPU"],
        caption=(
            "fleet: ledger-writer, orchestrators, reconciler and gateway as real processes with their "
            f"default settings; {PAIR} at {RATE}, {SPREAD_BPS} bp; the same PRE and POST fee rule on "
            f"both types. An exchange: POST {QUOTES} (sell {workload.AMOUNT:,} THB minor units for USD) "
            f"→ POST {services.INTAKE} FX_EXCHANGE with its quote → SETTLED (three legs on the THB and "
            f"USD ledgers); a P2P payment: signed POST {services.INTAKE} → SETTLED. Each worker starts "
            f"its next flow when its intent is terminal; {result.warmup_s:g} s warm-up, then "
            f"{result.seconds:g} s measured: settled/s counts the flows that ended inside it; latency "
            "from the first request to the SETTLED row, of the flows started inside it; quote: its POST "
            "sent → 201, client-side. Phases alternate; each type's best is compared."
        ),
    )
    for found in (result.p2p, result.fx):
        for n, phase in enumerate(found, 1):
            exchange, quote = phase.from_intake, phase.first_request
            out.add_row(
                phase.kind,
                f"{n}",
                f"{phase.flows:,}",
                f"{phase.rate:,.0f}",
                flows.ms(phase.run.p50_ms),
                flows.ms(phase.run.p95_ms),
                flows.ms(phase.run.p99_ms),
                "" if exchange is None else _pair(exchange.p50_ms, exchange.p99_ms),
                "" if quote is None else _pair(quote.p50_ms, quote.p99_ms),
                f"{phase.generator_cpu:.0%} of a core",
                flows.cpu_cell(phase),
                phase.problems(),
                end_section=n == len(found),
            )
    verdict = tables.verdict(goals_met(result)) + ("" if result.clean else " (not clean: see the phases)")
    blank = [""] * 4
    out.add_row(
        "FX/s ÷ P2P/s", "best", "", f"{result.ratio:.1%}", *blank, f"goal ≥ {GOAL:.0%}", "", "", verdict
    )
    return out


def stages_table(result: FxResult) -> Table:
    """Where the time goes in the best phase of each type."""
    return tables.stages(
        "Currency exchange beside P2P: where the time goes (best phase of each, per settled intent)",
        "The first stage is the client's requests up to the intent's CREATED row: for an exchange, its "
        "quote and the exchange's POST. Means add up to the total; percentiles need not.",
        [(P2P, result.best_p2p.run), (FX, result.best_fx.run)],
    )


def report(result: FxResult, console: Console) -> bool:
    console.print(table(result))
    console.print(stages_table(result))
    return goals_met(result)


def _fx_row(result: FxResult) -> model.Benchmark:
    f = result.best_fx
    exchange = f.from_intake
    return msgspec.structs.replace(
        runs.benchmark(
            f.run, f"FX_EXCHANGE: quote → exchange → SETTLED, {SELL} → {BUY}, {result.concurrency} concurrent"
        ),
        throughput=f.rate,
        baseline_name="P2P, same run, same concurrency",
        baseline=result.best_p2p.rate,
        ratio=result.ratio,
        goal=f"≥ {GOAL:.0%} of P2P",
        goal_met=goals_met(result),
        note=flows.notes([*result.p2p, *result.fx]),
        extra=model.known(
            {
                **flows.rounds(result.fx),
                "exchange → SETTLED p50 ms": None if exchange is None else exchange.p50_ms,
                "exchange → SETTLED p95 ms": None if exchange is None else exchange.p95_ms,
                "exchange → SETTLED p99 ms": None if exchange is None else exchange.p99_ms,
                "ratio the CPU per flow predicts (%)": flows.percent(result.cpu_bound_ratio),
                **flows.cpu_extra(f),
                "generator CPU (cores)": f.generator_cpu,
            }
        ),
    )


def _quote_row(result: FxResult) -> model.Benchmark:
    quote = result.quote
    return model.Benchmark(
        name=f"FX quote issue: POST {QUOTES} inside the exchange flows, sent → 201 (client-side)",
        unit="quotes/s",
        throughput=None,
        p50_ms=None if quote is None else model.finite(quote.p50_ms),
        p95_ms=None if quote is None else model.finite(quote.p95_ms),
        p99_ms=None if quote is None else model.finite(quote.p99_ms),
        extra={} if quote is None else {"quotes timed": float(quote.count)},
    )


def section(result: FxResult) -> model.Section:
    """The figures for `pm bench`'s report: P2P, exchanges beside it, and the quote's latency."""
    p = result.best_p2p
    p2p_row = msgspec.structs.replace(
        runs.benchmark(
            p.run, f"P2P: signed POST {services.INTAKE} → SETTLED, {result.concurrency} concurrent"
        ),
        throughput=p.rate,
        extra=model.known(
            {**flows.rounds(result.p2p), **flows.cpu_extra(p), "generator CPU (cores)": p.generator_cpu}
        ),
    )
    return model.Section(
        name="currency exchange",
        description=(
            f"FX_EXCHANGE flows (POST {QUOTES}, then POST {services.INTAKE} with the quote, until "
            f"SETTLED; {SELL} sold for {BUY} at {PAIR} {RATE}, {SPREAD_BPS} bp) beside P2P flows "
            f"(signed POST {services.INTAKE} until SETTLED) on the saga's fleet, closed loop with "
            f"{result.concurrency} concurrent flows, {result.warmup_s:g} s warm-up then "
            f"{result.seconds:g} s per phase, phases alternating for {len(result.p2p)} rounds; the best "
            "phase of each type, and the quote's round trip in the best exchange phase."
        ),
        benchmarks=[p2p_row, _fx_row(result), _quote_row(result)],
        stages=[runs.stage_set(GROUP, P2P, p.run), runs.stage_set(GROUP, FX, result.best_fx.run)],
        goals_met=goals_met(result),
    )
