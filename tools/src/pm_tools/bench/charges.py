"""Benchmark of merchant charges beside P2P payments: MINIAPP_CHARGEs settled per second, payment request
to SETTLED, beside P2P intents measured in the same run the same way (goal: ≥ 80 % of P2P/s).

The fleet is the saga benchmark's (`services`: ledger-writer, orchestrators, reconciler and gateway as
real processes with their default settings, `users` funded wallets), its gateway given a proxy secret,
and a merchant onboarded through the admin API with a mini-app that charges (`merchant`). Both types
are priced by the same two fee rules (1 % before, 1.00 flat after, paid by the payer), so the fee
engine does the same work for each.

Each of `concurrency` workers does one flow after another (a closed loop, `closed`) for `warmup_s`,
then `seconds` measured:

- a charge: the merchant asks (`POST /v1/payment-requests`, signed with its key: 201), the payer
  confirms (`POST /v1/me/payment-requests/{id}/confirm` straight to the gateway with `X-PM-User` and
  the proxy secret, the headers nginx would add: 202 with the MINIAPP_CHARGE intent), then the worker
  waits until the intent is terminal. The request's creation is inside the flow: no charge is made
  without one, and the merchant's request is a write of its own;
- a P2P payment: `POST /v1/intents` signed with a service key (202), then the same wait.

The wait: one task polls PostgreSQL every `POLL_S` for the intents being waited on (clients
long-polling the gateway with `Prefer: wait` would add gateway work this benchmark does not mean to
measure; both types wait the same way, and the poll's few ms are the same for both).

Per phase: settled/s is the flows whose wait ended inside the measured window, over the window;
latencies run from a flow's first request (for a charge, also from its confirmation) to the intent's
SETTLED timeline row, over the flows started inside the window, with the stages of the timeline
(`runs`). Every flow of the phase, warm-up and drain included, must end SETTLED.

The phases alternate (P2P then charges, then charges then P2P, …) for `rounds` rounds on the one
fleet, each after the tail of the one before has drained; each type's figure is its best phase, as the
gateway benchmark takes the best of its runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pm_client.api import TERMINAL_STATES
from pm_client.client import PMAuth
from pm_shared import db
from pm_tools.bench import closed, harness, merchant, model, queries, runs, services, tables, workload
from pm_tools.bench.runs import Run

GOAL = 0.80
"""Charges settled/s as a share of P2P settled/s, same run."""
P2P, CHARGE = "P2P", merchant.CHARGE
WARMUP_S = 1.0
POLL_S = 0.005
FLOW_TIMEOUT_S = 60.0
"""Longest a worker waits for its intent to be terminal (then the flow is an error)."""
REQUESTS = "/v1/payment-requests"
GROUP = "closed-loop runs (first request → SETTLED)"
"""The report's group of these stage sets."""


class Watch:
    """Futures of intents, resolved with their state once it is terminal, from one query every `POLL_S`
    on a connection of its own."""

    def __init__(self, conn: db.Conn) -> None:
        self.conn = conn
        self.waiting: dict[str, asyncio.Future[str]] = {}

    async def terminal(self, intent_id: str) -> str:
        """The intent's terminal state; TimeoutError after `FLOW_TIMEOUT_S`."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.waiting[intent_id] = future
        try:
            return await asyncio.wait_for(future, FLOW_TIMEOUT_S)
        finally:
            self.waiting.pop(intent_id, None)

    async def run(self) -> None:
        terminal = sorted(TERMINAL_STATES)
        while True:
            if self.waiting:
                for row in await self.conn.fetch(queries.SELECT_IN_STATES, list(self.waiting), terminal):
                    future = self.waiting.get(row["id"])
                    if future is not None and not future.done():
                        future.set_result(row["state"])
            await asyncio.sleep(POLL_S)


@contextlib.asynccontextmanager
async def watching(dsn: str) -> AsyncIterator[Watch]:
    conn = await db.connect(dsn, application_name="pm-bench-watch")
    watch = Watch(conn)
    task = asyncio.create_task(watch.run())
    try:
        yield watch
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await conn.close()


# --- the flows ----------------------------------------------------------------------------------


@dataclass
class Flow:
    """One flow: its intent, when its confirmation was sent (charges), how it ended, or what failed."""

    intent_id: str | None = None
    confirm_sent: float | None = None
    state: str | None = None
    error: str | None = None


class _Created(msgspec.Struct):
    id: str


_created = msgspec.json.Decoder(_Created)


def _refused(step: str, response: httpx.Response) -> Flow:
    return Flow(error=f"{step}: {response.status_code} {response.text[:300]}")


def _fresh() -> dict[str, str]:
    return {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}


@dataclass(frozen=True)
class _Flows:
    users: Sequence[str]
    key: PMAuth
    """The P2P service key."""
    shop: merchant.Shop
    watch: Watch
    rng: secrets.SystemRandom

    async def p2p(self, http: httpx.AsyncClient, n: int) -> Flow:
        payer, payee = self.rng.sample(self.users, 2)
        body = workload.body(payer, payee)
        sent = await http.post(services.INTAKE, content=body, headers=_fresh(), auth=self.key)
        if sent.status_code != 202:
            return _refused(f"POST {services.INTAKE}", sent)
        return await self._wait(Flow(intent_id=_created.decode(sent.content).id))

    async def charge(self, http: httpx.AsyncClient, n: int) -> Flow:
        payer = self.rng.choice(self.users)
        body = merchant.request_body(payer)
        asked = await http.post(REQUESTS, content=body, headers=_fresh(), auth=self.shop.key)
        if asked.status_code != 201:
            return _refused(f"POST {REQUESTS}", asked)
        confirm_sent = time.time()
        path = merchant.confirm_path(_created.decode(asked.content).id)
        confirmed = await http.post(path, headers=merchant.as_front_door(self.shop, payer))
        if confirmed.status_code != 202:
            return _refused("confirm", confirmed)
        return await self._wait(Flow(_created.decode(confirmed.content).id, confirm_sent))

    async def _wait(self, flow: Flow) -> Flow:
        assert flow.intent_id is not None
        try:
            flow.state = await self.watch.terminal(flow.intent_id)
        except TimeoutError:
            flow.error = f"intent {flow.intent_id} not terminal after {FLOW_TIMEOUT_S:g} s"
        return flow


# --- a phase ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """One type's closed-loop run."""

    kind: str
    rate: float
    """Flows settled inside the window, per second."""
    settled_in_window: int
    run: Run
    """The flows started inside the window: first request → SETTLED, and the stages."""
    from_confirm: Run | None
    """Charges: the same flows from the confirmation → SETTLED."""
    flows: int
    """Every flow of the phase, warm-up and drain included."""
    settled: int
    """Of `flows`, those whose intent settled."""
    failures: dict[str, int]
    unfinished: int
    errors: int
    first_error: str | None
    generator_cpu: float
    cpu_ms: dict[str, float]
    """Process → its CPU ms per flow over the phase (warm-up and drain included): the fleet's services
    and the PostgreSQL backends of the run's database (`_cpu`)."""

    @property
    def clean(self) -> bool:
        return (
            not (self.failures or self.unfinished or self.errors or self.run.stall)
            and self.settled == self.flows > 0
        )

    def problems(self) -> str:
        """What went wrong, in words, or "none"."""
        parts = [f"{code} {n:,}" for code, n in sorted(self.failures.items())]
        parts += [f"unfinished {self.unfinished:,}"] if self.unfinished else []
        parts += [self.run.stall] if self.run.stall else []
        parts += [f"errors {self.errors:,} (first: {self.first_error})"] if self.errors else []
        return ", ".join(parts) or "none"


def _cpu(rig: services.Rig) -> dict[str, float | None]:
    """CPU seconds so far: each service (the orchestrators together) and the run's PostgreSQL backends
    (the benchmark's own two connections among them: its waits' polls, a small share)."""
    found: dict[str, float | None] = {"orchestrators": 0.0}
    for role, seconds in rig.fleet.cpu().items():
        if role.startswith("orchestrator"):
            previous = found["orchestrators"]
            found["orchestrators"] = None if previous is None or seconds is None else previous + seconds
        else:
            found[role] = seconds
    found["postgres"] = harness.postgres_cpu_seconds(urlsplit(rig.dsn).path.lstrip("/"))
    return found


def _settled(record: closed.Timed[Flow]) -> bool:
    return record.value is not None and record.value.state == "SETTLED"


async def _phase(rig: services.Rig, flows: _Flows, kind: str, size: tuple[int, float, float]) -> Phase:
    """`kind`'s flows by `concurrency` workers for `warmup_s` + `seconds` (`size`), then its figures."""
    concurrency, warmup_s, seconds = size
    before, cpu = await services.scrape(rig.fleet), _cpu(rig)
    operation = flows.p2p if kind == P2P else flows.charge
    loop = await closed.run(rig.fleet.gateway, concurrency, warmup_s, seconds, operation)
    # Every flow waited for its intent: the phase's work is done once the loop returns.
    cpu_ms = harness.cpu_delta_ms(cpu, _cpu(rig), len(loop.records))
    stall = await runs.wait_terminal(rig.conn, rig.redis)
    metrics = await services.scrape(rig.fleet) - before
    made = [r.value for r in loop.records if r.value is not None and r.value.intent_id is not None]
    settled, failed, unfinished = await runs.ends(rig.conn, [f.intent_id for f in made if f.intent_id])
    measured = [r for r in loop.started_in_window() if r.value is not None and r.value.intent_id]
    first = (
        "payment request + confirm → CREATED (gateway)" if kind == CHARGE else "request → CREATED (gateway)"
    )
    started = {r.value.intent_id: r.started for r in measured if r.value and r.value.intent_id}
    run = await runs.outcome(rig.conn, kind, started, (first, "CREATED"), metrics, stall)
    from_confirm = None
    if kind == CHARGE:
        confirmed = {
            r.value.intent_id: r.value.confirm_sent
            for r in measured
            if r.value and r.value.intent_id and r.value.confirm_sent is not None
        }
        from_confirm = await runs.outcome(
            rig.conn, kind, confirmed, ("confirm → CREATED (gateway)", "CREATED"), metrics, stall
        )
    errors = [r.error or (r.value.error if r.value else None) for r in loop.records]
    errors = [e for e in errors if e]
    return Phase(
        kind=kind,
        rate=loop.rate(_settled),
        settled_in_window=len(loop.in_window(_settled)),
        run=run,
        from_confirm=from_confirm,
        flows=len(loop.records),
        settled=settled,
        failures=dict(failed),
        unfinished=sum(unfinished.values()),
        errors=len(errors),
        first_error=closed.first_error(errors),
        generator_cpu=loop.generator_cpu,
        cpu_ms=cpu_ms,
    )


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChargesResult:
    concurrency: int
    warmup_s: float
    seconds: float
    orchestrators: int
    users: int
    p2p: list[Phase]
    charges: list[Phase]
    """Each type's phases, in the order run."""

    @property
    def best_p2p(self) -> Phase:
        return max(self.p2p, key=lambda phase: phase.rate)

    @property
    def best_charge(self) -> Phase:
        return max(self.charges, key=lambda phase: phase.rate)

    @property
    def ratio(self) -> float:
        """Charges/s ÷ P2P/s, the best phase of each."""
        p2p = self.best_p2p.rate
        return self.best_charge.rate / p2p if p2p else 0.0

    @property
    def clean(self) -> bool:
        return all(phase.clean for phase in (*self.p2p, *self.charges))

    @property
    def cpu_bound_ratio(self) -> float | None:
        """Charges/s ÷ P2P/s as their CPU per flow predicts it (best phases; `harness.cpu_bound_ratio`)."""
        return harness.cpu_bound_ratio(self.best_p2p.cpu_ms, self.best_charge.cpu_ms)


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    concurrency: int = 32,
    seconds: float = 5.0,
    rounds: int = 3,
    warmup_s: float = WARMUP_S,
    orchestrators: int = 1,
    users: int = workload.USERS,
) -> ChargesResult:
    """`rounds` rounds of a P2P phase and a charges phase (alternating which goes first), on one fleet."""
    if rounds < 1 or concurrency < 1 or users < 2:
        raise ValueError("at least one round, one worker and two wallets")
    secret = merchant.proxy_secret()
    phases: dict[str, list[Phase]] = {P2P: [], CHARGE: []}
    async with services.running(
        server_dsn,
        redis_url,
        "charges",
        orchestrators=orchestrators,
        users=users,
        setup=workload.Setup(priced=(P2P, CHARGE)),
        gateway_variables={merchant.PROXY_SECRET_VARIABLE: secret},
    ) as rig:
        admin = await merchant.admin_key(rig.dsn, rig.kek)
        shop = await merchant.onboard(rig.fleet.gateway, admin, secret)
        async with watching(rig.dsn) as watch:
            flows = _Flows(rig.users, PMAuth(*rig.key), shop, watch, secrets.SystemRandom())
            for n in range(rounds):
                for kind in (P2P, CHARGE) if n % 2 == 0 else (CHARGE, P2P):
                    await runs.quiet(rig.conn, rig.redis)
                    phases[kind].append(await _phase(rig, flows, kind, (concurrency, warmup_s, seconds)))
    return ChargesResult(
        concurrency=concurrency,
        warmup_s=warmup_s,
        seconds=seconds,
        orchestrators=orchestrators,
        users=users,
        p2p=phases[P2P],
        charges=phases[CHARGE],
    )


# --- the report ---------------------------------------------------------------------------------


def goals_met(result: ChargesResult) -> bool:
    return result.clean and result.ratio >= GOAL


def _ms(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:,.0f} ms"


CPU_SHOWN = ("gateway", "orchestrators", "ledger-writer", "reconciler", "postgres")


def _cpu_cell(phase: Phase) -> str:
    return ", ".join(f"{name} {phase.cpu_ms[name]:.1f}" for name in CPU_SHOWN if name in phase.cpu_ms) or "—"


def table(result: ChargesResult) -> Table:
    """Each phase: settled/s and latency; then charges/s ÷ P2P/s against the goal."""
    figures = ["round", "flows", "settled/s", "p50", "p95", "p99", "confirm → SETTLED p50 / p99"]
    out = tables.table(
        f"Merchant charges beside P2P: settled/s, closed loop ({result.concurrency} concurrent flows, "
        f"{result.orchestrators} orchestrators, {result.users:,} wallets)",
        ["type", *figures, "generator CPU", "CPU ms per flow", "failed / unfinished / errors"],
        right=[*figures, "generator CPU"],
        caption=(
            "fleet: ledger-writer, orchestrators, reconciler and gateway as real processes with their "
            "default settings; the same PRE and POST fee rule on both types. A charge: POST "
            f"{REQUESTS} (merchant's key) → POST /v1/me/payment-requests/{{id}}/confirm (straight to "
            "the gateway with X-PM-User and the proxy secret) → SETTLED; a P2P payment: signed POST "
            f"{services.INTAKE} → SETTLED. Each worker starts its next flow when its intent is "
            f"terminal; {result.warmup_s:g} s warm-up, then {result.seconds:g} s measured: settled/s "
            "counts the flows that ended inside it; latency from the first request to the SETTLED row, "
            "of the flows started inside it. Phases alternate; each type's best is compared. CPU ms per "
            "flow: each process's CPU over the phase's flows (from /proc; postgres: the run's backends)."
        ),
    )
    rounds = {P2P: 0, CHARGE: 0}
    for phase in sorted((*result.p2p, *result.charges), key=lambda p: p.kind != P2P):
        rounds[phase.kind] += 1
        confirm = phase.from_confirm
        out.add_row(
            phase.kind,
            f"{rounds[phase.kind]}",
            f"{phase.flows:,}",
            f"{phase.rate:,.0f}",
            _ms(phase.run.p50_ms),
            _ms(phase.run.p95_ms),
            _ms(phase.run.p99_ms),
            "" if confirm is None else f"{_ms(confirm.p50_ms)} / {_ms(confirm.p99_ms)}",
            f"{phase.generator_cpu:.0%} of a core",
            _cpu_cell(phase),
            phase.problems(),
        )
    verdict = tables.verdict(goals_met(result)) + ("" if result.clean else " (not every flow settled)")
    out.add_row(
        "charges/s ÷ P2P/s",
        "best",
        "",
        f"{result.ratio:.1%}",
        "",
        "",
        "",
        f"goal ≥ {GOAL:.0%}",
        "",
        "",
        verdict,
    )
    return out


def stages_table(result: ChargesResult) -> Table:
    """Where the time goes in the best phase of each type."""
    return tables.stages(
        "Merchant charges beside P2P: where the time goes (best phase of each, per settled intent)",
        "The first stage is the client's requests up to the intent's CREATED row: for a charge, the "
        "payment request and the confirmation. Means add up to the total; percentiles need not.",
        [(P2P, result.best_p2p.run), (CHARGE, result.best_charge.run)],
    )


def report(result: ChargesResult, console: Console) -> bool:
    console.print(table(result))
    console.print(stages_table(result))
    return goals_met(result)


def _rounds(phases: Sequence[Phase]) -> dict[str, float | None]:
    return {f"round {n} settled/s": phase.rate for n, phase in enumerate(phases, 1)}


def _percent(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100


def _cpu_extra(phase: Phase) -> dict[str, float | None]:
    return {f"CPU ms per flow, {name}": phase.cpu_ms.get(name) for name in CPU_SHOWN}


def section(result: ChargesResult) -> model.Section:
    """The figures for `pm bench`'s report: P2P, and charges beside it, each its best phase."""
    p, c = result.best_p2p, result.best_charge
    confirm = c.from_confirm
    notes = [
        f"{ph.kind}: NOT clean: {ph.problems()}" for ph in (*result.p2p, *result.charges) if not ph.clean
    ]
    p2p_row = msgspec.structs.replace(
        runs.benchmark(
            p.run, f"P2P: signed POST {services.INTAKE} → SETTLED, {result.concurrency} concurrent"
        ),
        throughput=p.rate,
        extra=model.known({**_rounds(result.p2p), **_cpu_extra(p), "generator CPU (cores)": p.generator_cpu}),
    )
    charge_row = msgspec.structs.replace(
        runs.benchmark(
            c.run,
            f"MINIAPP_CHARGE: payment request → confirm → SETTLED, {result.concurrency} concurrent",
        ),
        throughput=c.rate,
        baseline_name="P2P, same run, same concurrency",
        baseline=p.rate,
        ratio=result.ratio,
        goal=f"≥ {GOAL:.0%} of P2P",
        goal_met=goals_met(result),
        note="; ".join(notes) or None,
        extra=model.known(
            {
                **_rounds(result.charges),
                "confirm → SETTLED p50 ms": None if confirm is None else confirm.p50_ms,
                "confirm → SETTLED p95 ms": None if confirm is None else confirm.p95_ms,
                "confirm → SETTLED p99 ms": None if confirm is None else confirm.p99_ms,
                "ratio the CPU per flow predicts (%)": _percent(result.cpu_bound_ratio),
                **_cpu_extra(c),
                "generator CPU (cores)": c.generator_cpu,
            }
        ),
    )
    return model.Section(
        name="merchant charges",
        description=(
            f"MINIAPP_CHARGE flows (the merchant's POST {REQUESTS}, the user's confirm straight to the "
            f"gateway as the front door sends it, until SETTLED) beside P2P flows (signed POST "
            f"{services.INTAKE} until SETTLED) on the saga's fleet, closed loop with "
            f"{result.concurrency} concurrent flows, {result.warmup_s:g} s warm-up then "
            f"{result.seconds:g} s per phase, phases alternating for {len(result.p2p)} rounds; the best "
            "phase of each type."
        ),
        benchmarks=[p2p_row, charge_row],
        stages=[runs.stage_set(GROUP, P2P, p.run), runs.stage_set(GROUP, CHARGE, c.run)],
        goals_met=goals_met(result),
    )
