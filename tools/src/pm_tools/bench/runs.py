"""A run of intents through the benchmarks' fleet, in figures: waiting until none is open, then reading
each intent's timeline (`pm.intent_event`) into settled/s, latency percentiles and the time per stage.

Settled/s is the settled intents over the first start (publish or request) to the last terminal
`at`; latencies end at the `at` of the intent's SETTLED row (PostgreSQL's clock_timestamp() on this
machine beside Python's time.time()). The stages are consecutive spans of the same timeline, so
their means add up to the total's; their percentiles need not.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from redis.asyncio import Redis

from pm_client.api import TERMINAL_STATES
from pm_shared import db
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import EVENTS, INTENTS, LEDGER_COMMANDS, LEDGER_RESULTS, StreamSpec, stream_key
from pm_shared.streams.stats import outstanding
from pm_tools.bench import harness, model, queries
from pm_tools.bench.services import Scrape

POLL_S = 0.25
STALL_S = 60.0
"""Longest wait without an intent finishing before the run is declared stuck."""
CHAIN = ("VALIDATED", "AUTHORIZED", "SETTLED")
"""The timeline states a P2P intent passes after its start, in order."""
WATCHED = (INTENTS, LEDGER_COMMANDS, LEDGER_RESULTS, EVENTS)
"""The streams whose outstanding entries a stalled run reports."""
PIPELINE_GROUP = "pipeline runs (everything published at once; publish → SETTLED)"
"""The report's group of the stages of runs published all at once."""


@dataclass(frozen=True)
class Stage:
    name: str
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float

    def cells(self) -> tuple[str, str, str, str]:
        """p50, p95, p99 and mean as a stages table shows them."""
        p50, p95, p99, mean = (
            f"{ms:,.1f} ms" for ms in (self.p50_ms, self.p95_ms, self.p99_ms, self.mean_ms)
        )
        return p50, p95, p99, mean


@dataclass(frozen=True)
class Run:
    """One run's figures (the HTTP-only ones are None for a pipeline run)."""

    name: str
    submitted: int
    """Intents that went in: published (pipeline) or accepted with a 202 (HTTP)."""
    settled: int
    failures: dict[str, int]
    """FAILED intents by failure code."""
    unfinished: int
    unfinished_states: dict[str, int]
    """Intents still open after the wait, by state."""
    stall: str | None
    """Set when the wait ended because no intent finished for `STALL_S`: what the streams held."""
    seconds: float
    """First publish (or request) to the last SETTLED `at`."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    stages: list[Stage]
    fee_eval_us: float | None
    """Mean fee-engine time per priced intent, from the orchestrators' histogram."""
    resumed: int
    """Intents the orchestrators' resume sweep took in again during the run (expected: 0)."""
    offered_rate: float | None = None
    accepted_rate: float | None = None
    answer_p50_ms: float | None = None
    answer_p99_ms: float | None = None
    rejected_503: int = 0
    errors: int = 0
    first_error: str | None = None
    generator_late_ms: float = 0.0
    """HTTP: the latest a request was sent after its scheduled time."""
    generator_cpu: float = 0.0
    """HTTP: this process's CPU time over the wall time of the offer (1.0: one core, busy throughout)."""
    warmup_s: float = 0.0
    """HTTP: offered before the measured window, at the same rate, and not measured."""
    intake_mean_ms: float | None = None
    """HTTP: the gateway's own mean time in `POST /v1/intents` (its histogram; warm-up included)."""

    @property
    def settled_rate(self) -> float:
        return self.settled / self.seconds if self.seconds > 0 else 0.0

    @property
    def clean(self) -> bool:
        return not (self.failures or self.unfinished or self.stall or self.errors) and self.settled > 0

    @property
    def total(self) -> Stage:
        """The whole way, start → SETTLED, as a stage."""
        return Stage("total", self.p50_ms, self.p95_ms, self.p99_ms, self.mean_ms)


# --- waiting ------------------------------------------------------------------------------------


async def wait_terminal(conn: db.Conn, redis: Redis, streams: Sequence[StreamSpec] = WATCHED) -> str | None:
    """Wait until no intent is open; None, or (when none finished for `STALL_S`) what `streams`
    held then, to tell a stuck fleet from a slow one."""
    last, progress = -1, time.monotonic()
    terminal = sorted(TERMINAL_STATES)
    while True:
        open_now = int(await conn.fetchval(queries.COUNT_OPEN, terminal))
        if open_now == 0:
            return None
        if open_now != last:
            last, progress = open_now, time.monotonic()
        elif time.monotonic() - progress > STALL_S:
            held = [f"{spec.name} {await _held(redis, spec.name)}" for spec in streams]
            unpublished = int(await conn.fetchval(queries.COUNT_UNPUBLISHED))
            return (
                f"stuck: no intent finished for {STALL_S:g} s; outstanding then: {', '.join(held)}; "
                f"outbox unpublished {unpublished:,}"
            )
        await asyncio.sleep(POLL_S)


async def _held(redis: Redis, name: str) -> str:
    """Outstanding entries of a stream's groups, or "missing" (Redis database 14 is shared by the
    benchmarks and their tests: another one's clean-up deletes the streams of a run under way)."""
    try:
        return f"{await outstanding(redis, stream_key(name, 0), 1_000_000):,}"
    except StreamMissingError:
        return "missing"


async def quiet(conn: db.Conn, redis: Redis) -> None:
    """Wait (at most `STALL_S`) until the outbox is published and the reconciler has read every event:
    the next run must not share the machine with the previous one's tail."""
    deadline = time.monotonic() + STALL_S
    while time.monotonic() < deadline:
        if not await conn.fetchval(queries.COUNT_UNPUBLISHED) and await _held(redis, EVENTS.name) in (
            "0",
            "missing",
        ):
            return
        await asyncio.sleep(POLL_S)


# --- reading the outcome ------------------------------------------------------------------------


async def ends(conn: db.Conn, intent_ids: list[str]) -> tuple[int, Counter[str], Counter[str]]:
    """What the intents ended as: how many settled, the failed by code, the still open by state."""
    settled = 0
    failed: Counter[str] = Counter()
    unfinished: Counter[str] = Counter()
    for row in await conn.fetch(queries.SELECT_OUTCOMES, intent_ids):
        if row["state"] == "SETTLED":
            settled += row["n"]
        elif row["state"] == "FAILED":
            failed[row["failure_code"]] += row["n"]
        else:
            unfinished[row["state"]] += row["n"]
    return settled, failed, unfinished


async def _timeline(conn: db.Conn, sql: str, intent_ids: list[str]) -> dict[str, dict[str, float]]:
    """Intent id → state → `at` (epoch s); a state written twice: the row read last counts."""
    timeline: dict[str, dict[str, float]] = {}
    for row in await conn.fetch(sql, intent_ids):
        timeline.setdefault(row["intent_id"], {})[row["to_state"]] = row["at"].timestamp()
    return timeline


def _spans(
    started: Mapping[str, float], timeline: Mapping[str, Mapping[str, float]], chain: Sequence[str]
) -> tuple[list[list[float]], list[float], list[float]]:
    """Per stage, the durations of the intents that went all the way; their totals; every terminal `at`."""
    spans: list[list[float]] = [[] for _ in chain]
    totals: list[float] = []
    ends: list[float] = []
    for intent_id, start in started.items():
        at = timeline.get(intent_id, {})
        ends += [when for state, when in at.items() if state in TERMINAL_STATES]
        if "SETTLED" not in at or any(s not in at for s in chain):
            continue
        points = [start] + [at[s] for s in chain]
        for i, (a, b) in enumerate(zip(points, points[1:], strict=False)):
            spans[i].append(b - a)
        totals.append(at["SETTLED"] - start)
    return spans, totals, ends


async def outcome(
    conn: db.Conn,
    name: str,
    started: Mapping[str, float],
    first_stage: tuple[str, str | None],
    metrics: Scrape,
    stall: str | None,
    chain: Sequence[str] = CHAIN,
    timeline_sql: str = queries.SELECT_TIMELINE,
) -> Run:
    """The run's figures from the timeline of the intents in `started` (intent id → start, epoch s).

    `first_stage`: the first stage's name and the timeline state it ends at (None: `chain[0]` is the
    first state the timeline records after the start). `chain`: the states every intent passes after
    that, ending with SETTLED; `timeline_sql` reads (intent_id, to_state, at) rows of the intents
    named by its one parameter.
    """
    id_list = list(started)
    timeline = await _timeline(conn, timeline_sql, id_list)
    settled, failed, unfinished = await ends(conn, id_list)
    first_name, first_state = first_stage
    chain = ([first_state] if first_state else []) + list(chain)
    names = [first_name] + [f"{a} → {b}" for a, b in zip(chain, chain[1:], strict=False)]
    spans, totals, terminal_ats = _spans(started, timeline, chain)
    first = min(started.values()) if started else 0.0
    p50, p95, p99, mean = harness.stats(totals)
    return Run(
        name=name,
        submitted=len(started),
        settled=settled,
        failures=dict(failed),
        unfinished=sum(unfinished.values()),
        unfinished_states=dict(unfinished),
        stall=stall,
        seconds=(max(terminal_ats) - first) if terminal_ats else 0.0,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=mean,
        stages=[Stage(n, *harness.stats(s)) for n, s in zip(names, spans, strict=True)],
        fee_eval_us=metrics.fee_eval_us,
        resumed=int(metrics.resumed),
    )


# --- in words and in the report's figures -------------------------------------------------------


def failures(run: Run) -> str:
    """What went wrong in `run`, in words, or "none"."""
    parts = [f"{code} {n:,}" for code, n in sorted(run.failures.items())]
    if run.unfinished:
        states = ", ".join(f"{state} {n:,}" for state, n in sorted(run.unfinished_states.items()))
        parts.append(f"unfinished {run.unfinished:,} ({states})")
    if run.stall:
        parts.append(run.stall)
    if run.errors:
        parts.append(f"errors {run.errors:,} (first: {run.first_error})")
    return ", ".join(parts) or "none"


def problems(run: Run) -> str | None:
    """The note of a run that is not clean."""
    found = failures(run)
    return None if found == "none" else f"NOT clean: {found}"


def stage_times(stage: Stage) -> model.StageTimes:
    return model.StageTimes(
        name=stage.name,
        p50_ms=model.finite(stage.p50_ms),
        p95_ms=model.finite(stage.p95_ms),
        p99_ms=model.finite(stage.p99_ms),
        mean_ms=model.finite(stage.mean_ms),
    )


def stage_set(group: str, name: str, run: Run) -> model.StageSet:
    return model.StageSet(
        group=group,
        name=name,
        stages=[stage_times(stage) for stage in run.stages],
        total=stage_times(run.total),
    )


def benchmark(run: Run, name: str) -> model.Benchmark:
    """`run`'s settled/s and latency percentiles, as a figure of the report (the rest: to replace)."""
    return model.Benchmark(
        name=name,
        unit="settled/s",
        throughput=run.settled_rate,
        p50_ms=model.finite(run.p50_ms),
        p95_ms=model.finite(run.p95_ms),
        p99_ms=model.finite(run.p99_ms),
    )
