"""Benchmark of PromptPay withdrawals beside P2P payments, in one run of one fleet, against the IPPS
sandbox answering every call after a simulated PSP latency: the adapter must not be the bottleneck;
the PSP's latency is overlapped, not serialized.

A payout is two calls to IPPS (inquiry, then confirm), so an adapter making one payout at a time
could make at most 1 / (2 × latency) payouts/s: 10/s at 50 ms, the *serialized ceiling*. It is
reported beside what was measured: withdrawals/s, withdrawals/s ÷ P2P/s of the same run (both types
share the orchestrator, the ledger-writer and PostgreSQL; a withdrawal costs more, one more step and
one more state change, but an adapter that is not the bottleneck keeps the two rates of one order),
and the adapter's concurrency: payouts in flight at once, the most (from the attempts' rows in
`pm.psp_tx_map`: recorded at `created_at`, final at `result_at`) and the mean (Little's law: the
time payouts spent in the adapter over the window it was busy).

The fleet is the saga benchmark's (`services`) plus the IPPS sandbox (`PM_IPPS_SANDBOX_LATENCY_MS` =
`latency_ms`, no callbacks) and adapter-ipps with its default settings (its consumer handles up to
`PM_STREAM_CONCURRENCY` jobs of a batch at once).

One pipeline run: `intents` rows in CREATED inserted in bulk (untimed), half P2P between two random
distinct wallets and half PROMPTPAY_WITHDRAWAL from a random wallet to a PromptPay mobile number,
`workload.AMOUNT` each (no sandbox fault amount), then their `IntentSubmitted` published onto
`pm:intents` interleaved (P2P, withdrawal, P2P, …) as fast as back-pressure admits. Per type:
settled/s, p50/p95/p99 publish → SETTLED, and the time per stage (`runs`). A withdrawal has one
stage more, the PSP's: AUTHORIZED → AUTHORIZED(paid), up to the row the orchestrator writes when the
adapter's result says IPPS paid (the job sent, read by the adapter, its inquiry and confirm, the
result read back).
"""

from __future__ import annotations

import itertools
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec
from rich.console import Console
from rich.table import Table

from pm_client import api
from pm_shared import db, messages
from pm_shared.streams.names import EVENTS, INTENTS, IPPS_JOBS, LEDGER_COMMANDS, LEDGER_RESULTS, PSP_RESULTS
from pm_tools.bench import harness, model, queries, runs, services, tables, workload
from pm_tools.bench.queries import PAID
from pm_tools.bench.runs import Run

LATENCY_MS = 50
"""The IPPS sandbox's delay before every /v1 answer."""
CALLS_PER_PAYOUT = 2
"""inquiry, then confirm: what one payout waits for when nothing goes wrong."""
INTENTS_DEFAULT = 2_000
P2P, WITHDRAWAL = "P2P", "PROMPTPAY_WITHDRAWAL"
MOBILE = "0812345678"
"""An ordinary registered mobile number in the sandbox (no fault attached)."""
PAYEE = api.PromptPayParty(proxy_type="MSISDN", proxy_value=MOBILE)
WITHDRAWAL_CHAIN = ("VALIDATED", "AUTHORIZED", PAID, "SETTLED")
WATCHED = (INTENTS, LEDGER_COMMANDS, LEDGER_RESULTS, IPPS_JOBS, PSP_RESULTS, EVENTS)


@dataclass(frozen=True)
class Adapter:
    """What adapter-ipps did with the run's payouts, from their attempts' rows."""

    payouts: int
    """Attempts finished (a final result published)."""
    deliveries: int
    """Job deliveries that reached the adapter (more than `payouts`: some job was retried)."""
    polls: int
    """Status reads made while an outcome was unknown (expected: 0)."""
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    """Job read (attempt recorded) → final result, per payout."""
    max_in_flight: int
    mean_in_flight: float
    """Little's law: the time all payouts spent in the adapter over `window_s`."""
    window_s: float
    """First attempt recorded → last one final."""


@dataclass(frozen=True)
class PspBenchResult:
    latency_ms: int
    orchestrators: int
    users: int
    p2p: Run
    withdrawals: Run
    adapter: Adapter
    sandbox_transfers: int
    """Transfers the IPPS sandbox made (one per withdrawal paid: never more)."""
    sandbox_paid: int
    """Satang the IPPS sandbox paid out."""
    fee_eval_us: float | None
    """Mean fee-engine time per priced intent, both types together."""
    resumed: int

    @property
    def ratio(self) -> float:
        """Withdrawals/s ÷ P2P/s, same run."""
        p2p = self.p2p.settled_rate
        return self.withdrawals.settled_rate / p2p if p2p else 0.0

    @property
    def serialized_ceiling(self) -> float | None:
        """Payouts/s of one adapter making one payout at a time (None: no simulated latency)."""
        return 1000 / (CALLS_PER_PAYOUT * self.latency_ms) if self.latency_ms else None

    @property
    def over_ceiling(self) -> float | None:
        """Withdrawals/s as a multiple of the serialized ceiling."""
        ceiling = self.serialized_ceiling
        return self.withdrawals.settled_rate / ceiling if ceiling else None

    @property
    def clean(self) -> bool:
        return self.p2p.clean and self.withdrawals.clean


# --- the run ------------------------------------------------------------------------------------


def _withdrawal(intent_id: str, key_id: str, payer: str) -> messages.IntentSubmitted:
    return messages.IntentSubmitted(
        intent_id=intent_id,
        message_id=f"{intent_id}:submitted",
        produced_at=messages.now(),
        type=WITHDRAWAL,
        amount=workload.AMOUNT,
        currency=workload.CURRENCY,
        source=messages.Party(kind="user", id=payer),
        target=messages.Party(kind="promptpay", proxy_type=PAYEE.proxy_type, proxy_value=PAYEE.proxy_value),
        key_id=key_id,
        from_name=payer,
    )


@dataclass(frozen=True)
class _Mixed:
    """The intents of the run: (id, payer, payee) P2P, (id, payer) withdrawals."""

    p2p: list[tuple[str, str, str]]
    withdrawals: list[tuple[str, str]]

    @classmethod
    def plan(cls, users: Sequence[str], intents: int) -> _Mixed:
        rng = secrets.SystemRandom()
        half = intents // 2
        p2p = [(str(workload.uuid7()), payer, payee) for payer, payee in workload.pairs(users, half, rng)]
        return cls(p2p, [(str(workload.uuid7()), rng.choice(users)) for _ in range(intents - half)])

    async def insert(self, conn: db.Conn, key_id: str) -> None:
        """The rows in CREATED, as the gateway leaves them."""
        p2p_ids, payers, payees = zip(*self.p2p, strict=True)
        await workload.insert(
            conn, queries.INSERT_P2P, key_id, [uuid.UUID(i) for i in p2p_ids], payers, payees
        )
        ids, payers = zip(*self.withdrawals, strict=True)
        target = msgspec.json.encode(PAYEE).decode()  # as the gateway stores the API's party
        await workload.insert(
            conn, queries.INSERT_WITHDRAWALS, key_id, [uuid.UUID(i) for i in ids], payers, party=target
        )

    def submitted(self, key_id: str) -> list[messages.IntentSubmitted]:
        """Interleaved, so that both types meet the same queues at the same time."""
        both = itertools.zip_longest(
            [workload.submitted(i, key_id, payer, payee) for i, payer, payee in self.p2p],
            [_withdrawal(i, key_id, payer) for i, payer in self.withdrawals],
        )
        return [m for pair in both for m in pair if m is not None]


async def _mixed(rig: services.Rig, intents: int) -> tuple[Run, Run, Adapter, services.Scrape]:
    """Insert, publish interleaved, wait for every intent to finish; each type's figures."""
    mixed = _Mixed.plan(rig.users, intents)
    await mixed.insert(rig.conn, rig.key[0])
    before = await services.scrape(rig.fleet)
    published = await workload.publish(rig.redis, mixed.submitted(rig.key[0]))
    stall = await runs.wait_terminal(rig.conn, rig.redis, WATCHED)
    metrics = await services.scrape(rig.fleet) - before
    first = ("published → VALIDATED", None)
    p2p_run = await runs.outcome(
        rig.conn,
        P2P,
        {i: published[i] for i, _, _ in mixed.p2p},
        first,
        metrics,
        stall,
        timeline_sql=queries.SELECT_PSP_TIMELINE,
    )
    withdrawal_run = await runs.outcome(
        rig.conn,
        WITHDRAWAL,
        {i: published[i] for i, _ in mixed.withdrawals},
        first,
        metrics,
        stall,
        chain=WITHDRAWAL_CHAIN,
        timeline_sql=queries.SELECT_PSP_TIMELINE,
    )
    adapter = await _adapter(rig.conn, [i for i, _ in mixed.withdrawals])
    return p2p_run, withdrawal_run, adapter, metrics


async def _adapter(conn: db.Conn, intent_ids: list[str]) -> Adapter:
    """The adapter's time per payout and its concurrency, from the attempts' rows."""
    rows = await conn.fetch(queries.SELECT_PAYOUT_ATTEMPTS, intent_ids)
    spans = [
        (r["created_at"].timestamp(), r["result_at"].timestamp()) for r in rows if r["result_at"] is not None
    ]
    # Sweep: +1 at each start, -1 at each end; an end before a start at the same instant.
    edges = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    in_flight = most = 0
    for _, step in edges:
        in_flight += step
        most = max(most, in_flight)
    durations = [b - a for a, b in spans]
    window = max(b for _, b in spans) - min(a for a, _ in spans) if spans else 0.0
    p50, p95, p99, mean = harness.stats(durations)
    return Adapter(
        payouts=len(spans),
        deliveries=sum(r["attempts"] for r in rows),
        polls=sum(r["polls"] for r in rows),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=mean,
        max_in_flight=most,
        mean_in_flight=sum(durations) / window if window > 0 else 0.0,
        window_s=window,
    )


async def _sandbox_ledger(base: str) -> tuple[int, int]:
    """(transfers made, satang paid out) by the IPPS sandbox."""
    async with httpx.AsyncClient(base_url=base, timeout=10, trust_env=False) as client:
        found = (await client.get("/_sim/ledger")).json()
    return int(found["transfers"]), int(found["paid"])


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    intents: int = INTENTS_DEFAULT,
    latency_ms: int = LATENCY_MS,
    orchestrators: int = 1,
    users: int = workload.USERS,
) -> PspBenchResult:
    """The mixed pipeline run of `intents` (half of them withdrawals) on one fleet, with the IPPS
    sandbox answering after `latency_ms`."""
    if intents < 2:
        raise ValueError("the run needs at least one intent of each type")
    async with services.running(
        server_dsn,
        redis_url,
        "psp",
        orchestrators=orchestrators,
        users=users,
        setup=workload.Setup(operations=frozenset({P2P, WITHDRAWAL})),
        ipps_latency_ms=latency_ms,
    ) as rig:
        p2p, withdrawals, adapter, metrics = await _mixed(rig, intents)
        assert rig.fleet.sandbox is not None, "a fleet started with a latency has its sandbox"
        transfers, paid = await _sandbox_ledger(rig.fleet.sandbox)
    return PspBenchResult(
        latency_ms=latency_ms,
        orchestrators=orchestrators,
        users=users,
        p2p=p2p,
        withdrawals=withdrawals,
        adapter=adapter,
        sandbox_transfers=transfers,
        sandbox_paid=paid,
        fee_eval_us=metrics.fee_eval_us,
        resumed=int(metrics.resumed),
    )


# --- the report ---------------------------------------------------------------------------------


def goals_met(result: PspBenchResult) -> bool:
    """Every intent settled, every withdrawal paid once, and withdrawals/s above the serialized ceiling."""
    ceiling = result.serialized_ceiling
    return (
        result.clean
        and result.sandbox_transfers == result.withdrawals.settled
        and (ceiling is None or result.withdrawals.settled_rate > ceiling)
    )


def _ms(value: float) -> str:
    return f"{value:,.0f} ms"


def table(result: PspBenchResult) -> Table:
    """Per type: settled/s and publish → SETTLED latency, and withdrawals/s ÷ P2P/s."""
    w, p = result.withdrawals, result.p2p
    figures = ["intents", "settled", "settled/s", "p50", "p95", "p99"]
    out = tables.table(
        f"PSP: PromptPay withdrawals/s beside P2P/s in one run (IPPS sandbox {result.latency_ms} ms "
        f"per call, {result.orchestrators} orchestrators, {result.users:,} wallets)",
        ["run", *figures, "failed / unfinished"],
        right=figures,
        caption=(
            "fleet: ledger-writer, orchestrators, reconciler, gateway, adapter-ipps and the IPPS sandbox "
            "as real processes with their default settings, on one machine with PostgreSQL, Redis and "
            "this load generator; a PRE and a POST fee rule on every P2P payment, none on withdrawals. "
            "Both types inserted in bulk, then their IntentSubmitted published interleaved onto "
            "pm:intents as fast as back-pressure admits. Latency: publish → the SETTLED row's `at` "
            "(mostly the wait behind the intents queued ahead); settled/s: the type's settled intents "
            "over first publish → its last SETTLED. Fee engine / intent (both types): "
            + ("—" if result.fee_eval_us is None else f"{result.fee_eval_us:,.0f} µs")
            + f"; intents resumed by the sweep: {result.resumed:,}."
        ),
    )
    for run in (p, w):
        out.add_row(
            run.name,
            f"{run.submitted:,}",
            f"{run.settled:,}",
            f"{run.settled_rate:,.0f}",
            _ms(run.p50_ms),
            _ms(run.p95_ms),
            _ms(run.p99_ms),
            runs.failures(run),
            end_section=run is w,
        )
    out.add_row("withdrawals/s ÷ P2P/s", "", "", f"{result.ratio:.0%}", "", "", "", "")
    return out


def overlap_table(result: PspBenchResult) -> Table:
    """The evidence that the PSP's latency is overlapped: withdrawals/s against the serialized
    ceiling, and payouts in flight at the adapter."""
    w, a = result.withdrawals, result.adapter
    ceiling, over = result.serialized_ceiling, result.over_ceiling
    paid = next((s for s in w.stages if s.name.endswith(PAID)), None)
    out = tables.table(
        "PSP: is the latency of IPPS overlapped? (one adapter-ipps, default settings)",
        ["figure", "value", ""],
        right=["value"],
        caption=(
            f"Serialized ceiling: what one adapter making one payout at a time could reach, "
            f"{CALLS_PER_PAYOUT} calls (inquiry, confirm) of {result.latency_ms} ms each per payout. "
            "In flight: between the attempt's row being recorded (the job read) and its final result "
            "(pm.psp_tx_map); the mean is Little's law, the payouts' time in the adapter over the "
            "window from the first recorded to the last final."
        ),
    )
    out.add_row("IPPS sandbox latency", f"{result.latency_ms} ms", "added to every /v1 answer")
    if ceiling is not None and over is not None:
        verdict = "above the ceiling: overlapped" if over > 1 else "NOT above the ceiling"
        out.add_row(
            "serialized ceiling",
            f"{ceiling:,.1f}/s",
            f"1 / ({CALLS_PER_PAYOUT} × {result.latency_ms} ms)",
        )
        out.add_row(
            "withdrawals settled/s", f"{w.settled_rate:,.0f}/s", f"×{over:,.1f} the ceiling: {verdict}"
        )
    else:
        out.add_row("withdrawals settled/s", f"{w.settled_rate:,.0f}/s", "no simulated latency: no ceiling")
    out.add_row("withdrawals/s ÷ P2P/s", f"{result.ratio:.0%}", "same run, interleaved")
    out.add_row(
        "payouts in flight at the adapter",
        f"max {a.max_in_flight:,}",
        f"mean {a.mean_in_flight:,.1f} ({a.payouts:,} payouts × {a.mean_ms:,.0f} ms / {a.window_s:,.2f} s)",
    )
    out.add_row(
        "adapter time per payout",
        f"p50 {a.p50_ms:,.0f} ms",
        f"p95 {a.p95_ms:,.0f} ms, p99 {a.p99_ms:,.0f} ms (job read → final result)",
    )
    if paid is not None:
        out.add_row(
            "PSP stage (AUTHORIZED → paid)",
            f"p50 {paid.p50_ms:,.0f} ms",
            f"p95 {paid.p95_ms:,.0f} ms, p99 {paid.p99_ms:,.0f} ms (job sent → result read back)",
        )
    out.add_row(
        "IPPS sandbox",
        f"{result.sandbox_transfers:,} transfers",
        f"{result.sandbox_paid / 100:,.2f} THB paid; job deliveries {a.deliveries:,}, "
        f"status polls {a.polls:,}",
    )
    return out


def stages_table(result: PspBenchResult) -> Table:
    """Where the time goes, per type, from the intents' timelines; and the adapter's own time."""
    a = result.adapter
    out = tables.stages(
        "PSP: where the time goes (per settled intent, from pm.intent_event; the adapter's own "
        "time from pm.psp_tx_map)",
        "→ VALIDATED: intake, validation, pricing, limits and the authorize command sent; "
        "→ AUTHORIZED: the ledger-writer's pendings (a withdrawal's: held against IPPS clearing) "
        "and its result read back; → AUTHORIZED(paid): the PSP job sent, read by adapter-ipps, its "
        "inquiry and confirm at IPPS, the result read back by the orchestrator; → SETTLED: the "
        "settle command and the settlement's projections. Means add up to the total; percentiles "
        f"need not. The adapter's line: job read → final result (2 × {result.latency_ms} ms of it "
        "is the sandbox's latency).",
        [(run.name, run) for run in (result.p2p, result.withdrawals)],
    )
    out.add_row(
        WITHDRAWAL,
        "in adapter-ipps (job read → final)",
        *runs.Stage("", a.p50_ms, a.p95_ms, a.p99_ms, a.mean_ms).cells(),
    )
    return out


def report(result: PspBenchResult, console: Console) -> bool:
    """Print the three tables on `console`; True when every intent settled, each withdrawal was paid
    once and withdrawals/s beat the serialized ceiling."""
    console.print(table(result))
    console.print(overlap_table(result))
    console.print(stages_table(result))
    return goals_met(result)


# --- the figures for `pm bench`'s report --------------------------------------------------------


def section(result: PspBenchResult) -> model.Section:
    """The figures for `pm bench`'s report: withdrawals/s beside P2P/s of the same run and beside the
    serialized ceiling, and each type's stages."""
    p, w, a = result.p2p, result.withdrawals, result.adapter
    ceiling = result.serialized_ceiling
    met = goals_met(result)
    paid_once = f"{result.sandbox_transfers:,} transfers at the sandbox for {w.settled:,} withdrawals settled"
    adapter = model.known(
        {
            "payouts in flight, max": float(a.max_in_flight),
            "payouts in flight, mean": a.mean_in_flight,
            "adapter p50 ms (job read → final)": a.p50_ms,
            "adapter p99 ms (job read → final)": a.p99_ms,
            "sandbox transfers": float(result.sandbox_transfers),
            "job deliveries": float(a.deliveries),
            "status polls": float(a.polls),
        }
    )

    benchmarks = [
        msgspec.structs.replace(
            runs.benchmark(p, f"PSP run, {P2P} ({p.submitted:,} intents), publish → SETTLED"),
            note=runs.problems(p) or "a short burst, interleaved with the withdrawals",
        ),
        msgspec.structs.replace(
            runs.benchmark(w, f"PSP run, {WITHDRAWAL} ({w.submitted:,} intents), publish → SETTLED"),
            baseline_name=f"{P2P}, same run",
            baseline=p.settled_rate,
            ratio=result.ratio,
            note=runs.problems(w) or paid_once,
            extra=adapter,
        ),
    ]
    if ceiling is not None:
        benchmarks.append(
            model.Benchmark(
                name=f"PSP run, {WITHDRAWAL}/s against the serialized ceiling",
                unit="settled/s",
                throughput=w.settled_rate,
                baseline_name=(
                    "serialized ceiling: one payout at a time, "
                    f"1 / ({CALLS_PER_PAYOUT} × {result.latency_ms} ms)"
                ),
                baseline=ceiling,
                ratio=result.over_ceiling,
                goal="above the ceiling, every intent settled, each withdrawal paid once",
                goal_met=met,
                note="the baseline is computed, not measured",
            )
        )
    return model.Section(
        name="PSP",
        description=(
            f"PromptPay withdrawals beside P2P in one run of the saga's fleet plus adapter-ipps and the "
            f"IPPS sandbox answering every call {result.latency_ms} ms late; {p.submitted + w.submitted:,} "
            "intents inserted in bulk, then published interleaved as fast as back-pressure admits."
        ),
        benchmarks=benchmarks,
        stages=[
            runs.stage_set(runs.PIPELINE_GROUP, f"PSP run: {P2P}", p),
            runs.stage_set(runs.PIPELINE_GROUP, f"PSP run: {WITHDRAWAL}", w),
        ],
        goals_met=met,
    )
