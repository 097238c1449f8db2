"""Closed-loop flows that each end in an intent, waited for until it is terminal: what the merchant-charge
and exchange benchmarks share, with the P2P flows each is compared with.

A flow is the HTTP requests that make one intent (a signed P2P `POST /v1/intents`; a payment request's
confirmation; a quote, then the exchange), then the wait until that intent is terminal. The wait: one
task polls PostgreSQL every `POLL_S` for the intents being waited on (`Watch`). Clients long-polling the
gateway with `Prefer: wait` would add gateway work these benchmarks do not mean to measure; every type
waits the same way, so the poll's few ms are the same for each.

A phase (`measure`) is one kind of flow run by `concurrency` workers in a closed loop (`closed`) for a
warm-up, then a measured window. Settled/s: the flows whose wait ended inside the window, over it.
Latency: from a flow's first request to its intent's SETTLED timeline row, of the flows started inside
the window, with the stages of the timeline (`runs`); for a flow of more than one request, also from
the request that made the intent (`Phase.from_intake`), and the first request's own round trip
(`Phase.first_request`: an exchange's quote). Every flow of a phase, warm-up and drain included, must
end SETTLED and no worker may run out of work (`closed.ExhaustedError`), or the phase is not clean.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
import msgspec

from pm_client.api import TERMINAL_STATES
from pm_client.client import PMAuth
from pm_shared import db
from pm_tools.bench import closed, harness, queries, runs, services, workload
from pm_tools.bench.runs import Run

WARMUP_S = 1.0
POLL_S = 0.005
FLOW_TIMEOUT_S = 60.0
"""Longest a worker waits for its intent to be terminal (then the flow is an error)."""
P2P = "P2P"
CPU_SHOWN = ("gateway", "orchestrators", "ledger-writer", "reconciler", "postgres")
"""Whose CPU per flow the tables show (`cpu`)."""


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


# --- one flow -----------------------------------------------------------------------------------


@dataclass
class Flow:
    """One flow: its intent, how it ended, or what failed on the way."""

    intent_id: str | None = None
    intake_sent: float | None = None
    """Epoch s: when the request that made the intent was sent, in a flow of more than one request (a
    confirmation after its payment request, an exchange after its quote)."""
    first_s: float | None = None
    """Seconds the flow's first request took, sent to answered, in a flow of more than one request
    (an exchange's quote)."""
    state: str | None = None
    error: str | None = None


class _Created(msgspec.Struct):
    id: str


_created = msgspec.json.Decoder(_Created)

Operation = Callable[[httpx.AsyncClient, int], Awaitable[Flow]]
"""One flow on a worker's client (n: the flow's number in the phase, from 0)."""


def created_id(response: httpx.Response) -> str:
    """The `id` of what a 201 or 202 answer made."""
    return _created.decode(response.content).id


def refused(step: str, response: httpx.Response) -> Flow:
    return Flow(error=f"{step}: {response.status_code} {response.text[:300]}")


def fresh() -> dict[str, str]:
    """Headers of a new JSON request that makes something: a fresh Idempotency-Key."""
    return {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}


async def settle(watch: Watch, flow: Flow) -> Flow:
    """`flow` once its intent is terminal (its state set), or with the timeout as its error."""
    assert flow.intent_id is not None
    try:
        flow.state = await watch.terminal(flow.intent_id)
    except TimeoutError:
        flow.error = f"intent {flow.intent_id} not terminal after {FLOW_TIMEOUT_S:g} s"
    return flow


@dataclass(frozen=True)
class Payments:
    """The baseline's flows: a signed P2P `POST /v1/intents` between two random funded wallets (202),
    then the wait."""

    users: Sequence[str]
    key: PMAuth
    watch: Watch
    rng: secrets.SystemRandom

    async def __call__(self, http: httpx.AsyncClient, n: int) -> Flow:
        payer, payee = self.rng.sample(self.users, 2)
        body = workload.body(payer, payee)
        sent = await http.post(services.INTAKE, content=body, headers=fresh(), auth=self.key)
        if sent.status_code != 202:
            return refused(f"POST {services.INTAKE}", sent)
        return await settle(self.watch, Flow(intent_id=created_id(sent)))


# --- a phase ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """A kind of flow, as the tables and the report name it."""

    name: str
    first_stage: str
    """The first stage of its timeline: its requests up to the intent's CREATED row."""
    intake_stage: str | None = None
    """For flows of more than one request: the stage from the request that made the intent to CREATED
    (its latency is then reported from there too)."""


PAYMENT = Kind(P2P, "request → CREATED (gateway)")


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    count: int


@dataclass(frozen=True)
class Phase:
    """One kind's closed-loop run."""

    kind: str
    rate: float
    """Flows settled inside the window, per second."""
    settled_in_window: int
    run: Run
    """The flows started inside the window: first request → SETTLED, and the stages."""
    from_intake: Run | None
    """Flows of more than one request: the same flows from the request that made the intent → SETTLED."""
    first_request: Latency | None
    """Flows of more than one request: the first request's round trip, of the flows started inside
    the window (an exchange's quote)."""
    flows: int
    """Every flow of the phase, warm-up and drain included."""
    settled: int
    """Of `flows`, those whose intent settled."""
    failures: dict[str, int]
    unfinished: int
    errors: int
    first_error: str | None
    exhausted: str | None
    """Why a worker ran out of work before the window ended (the figures are then a lower bound)."""
    generator_cpu: float
    cpu_ms: dict[str, float]
    """Process → its CPU ms per flow over the phase (warm-up and drain included): the fleet's services
    and the PostgreSQL backends of the run's database (`cpu`)."""

    @property
    def clean(self) -> bool:
        failed = self.failures or self.unfinished or self.errors or self.run.stall or self.exhausted
        return not failed and self.settled == self.flows > 0

    def problems(self) -> str:
        """What went wrong, in words, or "none"."""
        parts = [f"{code} {n:,}" for code, n in sorted(self.failures.items())]
        parts += [f"unfinished {self.unfinished:,}"] if self.unfinished else []
        parts += [self.run.stall] if self.run.stall else []
        parts += [f"errors {self.errors:,} (first: {self.first_error})"] if self.errors else []
        parts += [f"RAN OUT OF WORK: {self.exhausted}"] if self.exhausted else []
        return ", ".join(parts) or "none"


def best(phases: Sequence[Phase]) -> Phase:
    """The phase with the highest settled/s (as the gateway benchmark takes its best run)."""
    return max(phases, key=lambda phase: phase.rate)


def cpu(rig: services.Rig) -> dict[str, float | None]:
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


def _first_request(measured: Sequence[closed.Timed[Flow]]) -> Latency | None:
    spans = [r.value.first_s for r in measured if r.value is not None and r.value.first_s is not None]
    if not spans:
        return None
    p50, p95, p99, _ = harness.stats(spans)
    return Latency(p50, p95, p99, len(spans))


async def measure(
    rig: services.Rig, kind: Kind, operation: Operation, size: tuple[int, float, float]
) -> Phase:
    """`kind`'s flows (`operation`) by `concurrency` workers for `warmup_s` + `seconds` (`size`), then
    its figures. What the flows need made beforehand (payment requests) is made before the call, so
    neither its time nor its CPU is counted."""
    concurrency, warmup_s, seconds = size
    before, cpu_before = await services.scrape(rig.fleet), cpu(rig)
    loop = await closed.run(rig.fleet.gateway, concurrency, warmup_s, seconds, operation)
    # Every flow waited for its intent: the phase's work is done once the loop returns.
    cpu_ms = harness.cpu_delta_ms(cpu_before, cpu(rig), len(loop.records))
    stall = await runs.wait_terminal(rig.conn, rig.redis)
    metrics = await services.scrape(rig.fleet) - before
    made = [r.value.intent_id for r in loop.records if r.value is not None and r.value.intent_id]
    settled, failed, unfinished = await runs.ends(rig.conn, made)
    measured = [r for r in loop.started_in_window() if r.value is not None and r.value.intent_id]
    started = {r.value.intent_id: r.started for r in measured if r.value and r.value.intent_id}
    run = await runs.outcome(rig.conn, kind.name, started, (kind.first_stage, "CREATED"), metrics, stall)
    from_intake = None
    if kind.intake_stage is not None:
        sent = {
            r.value.intent_id: r.value.intake_sent
            for r in measured
            if r.value and r.value.intent_id and r.value.intake_sent is not None
        }
        from_intake = await runs.outcome(
            rig.conn, kind.name, sent, (kind.intake_stage, "CREATED"), metrics, stall
        )
    errors = [e for r in loop.records if (e := r.error or (r.value.error if r.value else None))]
    return Phase(
        kind=kind.name,
        rate=loop.rate(_settled),
        settled_in_window=len(loop.in_window(_settled)),
        run=run,
        from_intake=from_intake,
        first_request=_first_request(measured),
        flows=len(loop.records),
        settled=settled,
        failures=dict(failed),
        unfinished=sum(unfinished.values()),
        errors=len(errors),
        first_error=closed.first_error(errors),
        exhausted=loop.exhausted_why,
        generator_cpu=loop.generator_cpu,
        cpu_ms=cpu_ms,
    )


# --- in tables and in the report ----------------------------------------------------------------


def ms(value: float | None) -> str:
    return "—" if value is None or value != value else f"{value:,.0f} ms"


def cpu_cell(phase: Phase) -> str:
    return ", ".join(f"{name} {phase.cpu_ms[name]:.1f}" for name in CPU_SHOWN if name in phase.cpu_ms) or "—"


def rounds(phases: Sequence[Phase]) -> dict[str, float | None]:
    return {f"round {n} settled/s": phase.rate for n, phase in enumerate(phases, 1)}


def cpu_extra(phase: Phase) -> dict[str, float | None]:
    return {f"CPU ms per flow, {name}": phase.cpu_ms.get(name) for name in CPU_SHOWN}


def percent(ratio: float | None) -> float | None:
    return None if ratio is None else ratio * 100


def ratio(figure: Phase, baseline: Phase) -> float:
    """figure's settled/s ÷ baseline's (0 when the baseline settled nothing)."""
    return figure.rate / baseline.rate if baseline.rate else 0.0


def notes(phases: Sequence[Phase]) -> str | None:
    """The report's note on the phases that are not clean."""
    found = [f"{phase.kind}: NOT clean: {phase.problems()}" for phase in phases if not phase.clean]
    return "; ".join(found) or None
