"""Benchmark of the saga: settled P2P intents/s and accept → SETTLED latency, with the fleet on this machine.

The fleet runs as real processes with their default settings: the ledger-writer, `orchestrators`
orchestrators (each its own consumer name), the reconciler (it drains `pm:events`, as in production)
and the gateway, on a throw-away database (migrated, dropped afterwards) and Redis database 14 of
the given server (reserved for the benchmarks; every `{pm:*` key is deleted before and after).

Before any service starts, `USERS` wallets are opened and funded straight on the embedded ledger
(from operator equity), one PRE and one POST fee rule for P2P are installed (so the fee engine is
on the hot path) and a service key is made; afterwards only the ledger-writer writes the ledger.
The orchestrators resume stalled intents only after an hour here: the pipeline run's intents are
all inserted before the first is published, and a sweep taking in those still waiting for their
message would measure the benchmark, not the saga.

Two runs, each a P2P payment between two random distinct wallets, `AMOUNT` each:

- pipeline: `intents` rows in CREATED inserted in bulk (untimed), then their `IntentSubmitted`
  messages published onto `pm:intents` as fast as back-pressure admits (the gateway's threshold);
  an intent's latency runs from the publish of its message;
- HTTP: signed `POST /v1/intents` offered open-loop at `rate` per second for `seconds` (a request
  is sent on schedule whether or not earlier ones were answered; a 503 is counted, not retried);
  an intent's latency runs from sending its request. It is preceded by `WARMUP_S` at the same
  rate, not measured (a cold gateway opens its database connections and fills its key cache).

Either way settled/s is the settled intents over first publish (or request) to the last
SETTLED `at`, and latencies end at the `at` of the intent's SETTLED timeline row (PostgreSQL's
clock_timestamp() on this machine beside Python's time.time()). The stages come from the same
timeline: start → VALIDATED (intake, validation, pricing, limits, the authorize command sent),
→ AUTHORIZED (the ledger-writer's pendings and the result back), → SETTLED (the settle command,
its posts and the settlement's projections). Fee-engine time per priced intent comes from the
orchestrators' `pm_fee_evaluation_seconds` histogram (sum/count over the run).

Goals: ≥ 1,000 settled intents/s pipeline-only; p99 ≤ 250 ms at 300 intents/s offered through HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import math
import os
import secrets
import ssl
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import tigerbeetle as tb
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pm_client.client import PMAuth
from pm_shared import db, messages
from pm_shared.db import drop_database, ensure_database, migrate
from pm_shared.db.pool import with_database
from pm_shared.fees.rules import FeeRule, insert_rule
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.ledger import BATCH_MAX, chart, ids, open_ledger
from pm_shared.ledger.accounts import open_accounts, open_operator_accounts
from pm_shared.runtime import tune_gc
from pm_shared.streams import BackPressureError, Publisher, connect
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import (
    EVENTS,
    INTENTS,
    LEDGER_COMMANDS,
    LEDGER_RESULTS,
    StreamSpec,
    stream_key,
)
from pm_shared.streams.provision import provision
from pm_shared.streams.stats import outstanding
from pm_tools.bench import model as bench_model
from pm_tools.bench.gateway import _base_env, _percentile, _process
from pm_tools.bench.ledger import _free_port, bench_redis_url

PIPELINE_GOAL = 1_000.0
"""Settled intents/s, pipeline only."""
HTTP_P99_GOAL_MS = 250.0
"""p99 accept → SETTLED at the offered HTTP rate (the issue's: 300 intents/s)."""
HTTP_GOAL_RATE = 300.0
"""The offered rate the p99 goal is set at; runs offered less are held to it too."""
RATES = (100.0, 200.0, 300.0)
"""The HTTP run's offered rates by default: a load sweep up to the goal's rate."""

USERS = 1_000
CURRENCY = "THB"
AMOUNT = 10_000
FUNDS = 10**12
"""Per wallet: enough for every intent a run can make it pay, fees included."""
PRE_RULE, POST_RULE = "bench-pre", "bench-post"
PATH = "/v1/intents"

LEASE_KEY = "pm:bench:ledger-writer:lease"
RESUME_AFTER_S = 3_600
STREAM_MAXLEN = 10_000
"""The fleet's default: back-pressure at half of it is part of what is measured."""
PUBLISH_CHUNK = 500
BACKPRESSURE_SLEEP_S = 0.005
POLL_S = 0.25
STALL_S = 60.0
"""Longest wait without an intent finishing before the run is declared stuck."""
REQUEST_TIMEOUT_S = 30.0
CLIENTS = 32
WARMUP_S = 2.0
"""HTTP: offered at the same rate, just before the measured seconds, and not measured."""
TERMINAL = ("SETTLED", "FAILED")
CHAIN = ("VALIDATED", "AUTHORIZED", "SETTLED")
"""The timeline states a P2P intent passes after its start, in order."""
WATCHED = (INTENTS, LEDGER_COMMANDS, LEDGER_RESULTS, EVENTS)
"""The streams whose outstanding entries a stalled run reports."""

INSERT_INTENTS = """
INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                       source, target, from_name, to_name)
SELECT t.id, $1, 'bench-' || t.id::text, $2, 'P2P', 'CREATED', $3, $4,
       jsonb_build_object('kind', 'user', 'id', t.payer), jsonb_build_object('kind', 'user', 'id', t.payee),
       t.payer, t.payee
FROM unnest($5::uuid[], $6::text[], $7::text[]) AS t(id, payer, payee)
"""
COUNT_UNPUBLISHED = "SELECT count(*) FROM pm.outbox WHERE published_at IS NULL"
COUNT_OPEN = "SELECT count(*) FROM pm.intent WHERE state NOT IN ('SETTLED', 'FAILED')"
SELECT_TIMELINE = """
SELECT intent_id::text, to_state, at FROM pm.intent_event WHERE intent_id = ANY($1::uuid[])
"""
SELECT_OUTCOMES = """
SELECT state, failure_code, count(*) AS n FROM pm.intent WHERE id = ANY($1::uuid[])
GROUP BY state, failure_code
"""


class _Created(msgspec.Struct):
    id: str


_created = msgspec.json.Decoder(_Created)


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
    """One run's figures (the HTTP-only ones are None for the pipeline run)."""

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


@dataclass(frozen=True)
class SagaResult:
    orchestrators: int
    users: int
    pipeline: Run
    http_runs: list[Run]
    """The HTTP run at each offered rate, in the order offered (the load sweep)."""
    http_seconds: float = 0.0
    """Measured seconds of each HTTP run (after its warm-up)."""

    @property
    def http(self) -> Run:
        """The HTTP run at the goal's rate when there is one, else the last."""
        return next((run for run in self.http_runs if _at_goal_rate(run)), self.http_runs[-1])


def _at_goal_rate(run: Run) -> bool:
    return run.offered_rate is not None and math.isclose(run.offered_rate, HTTP_GOAL_RATE, rel_tol=0.01)


def _held_to_p99_goal(run: Run) -> bool:
    """An HTTP run offered at most the goal's rate (above it, it is reported, not held to the goal)."""
    return run.offered_rate is not None and run.offered_rate <= HTTP_GOAL_RATE * 1.01


# --- the fleet ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fleet:
    gateway: str
    orchestrators: list[str]
    """Base URLs of the orchestrators (their /metrics)."""


def _env(dsn: str, redis_url: str, kek: str, port_var: str, port: int, role: str) -> dict[str, str]:
    return {
        **_base_env(),
        "PM_REDIS_URL": redis_url,
        "PM_DATABASE_URL": dsn,
        "PM_KEY_ENCRYPTION_KEY": kek,
        "PM_LOG_LEVEL": "WARNING",
        "PM_CONSUMER_NAME": f"pm-bench-{role}-{secrets.token_hex(4)}",
        port_var: str(port),
    }


@contextlib.asynccontextmanager
async def _fleet(dsn: str, redis_url: str, kek: str, orchestrators: int) -> AsyncIterator[Fleet]:
    """Ledger-writer, orchestrators, reconciler and gateway, each ready; stopped on exit."""
    async with contextlib.AsyncExitStack() as stack:
        port = _free_port()
        env = _env(dsn, redis_url, kek, "PM_LEDGER_WRITER_PORT", port, "ledger-writer")
        env["PM_LEDGER_WRITER_LEASE_KEY"] = LEASE_KEY
        ready = f"http://127.0.0.1:{port}/readyz"
        await stack.enter_async_context(_process("ledger-writer", ["-m", "pm_ledger_writer"], env, ready))
        bases = []
        for n in range(orchestrators):
            port = _free_port()
            env = _env(dsn, redis_url, kek, "PM_ORCHESTRATOR_PORT", port, f"orchestrator-{n}")
            env["PM_ORCHESTRATOR_RESUME_AFTER_S"] = str(RESUME_AFTER_S)
            base = f"http://127.0.0.1:{port}"
            await stack.enter_async_context(
                _process(f"orchestrator {n}", ["-m", "pm_orchestrator"], env, base + "/readyz")
            )
            bases.append(base)
        port = _free_port()
        env = _env(dsn, redis_url, kek, "PM_RECONCILER_PORT", port, "reconciler")
        ready = f"http://127.0.0.1:{port}/readyz"
        await stack.enter_async_context(_process("reconciler", ["-m", "pm_reconciler"], env, ready))
        port = _free_port()
        env = _env(dsn, redis_url, kek, "PM_GATEWAY_PORT", port, "gateway")
        gateway = f"http://127.0.0.1:{port}"
        await stack.enter_async_context(_process("gateway", ["-m", "pm_gateway"], env, gateway + "/readyz"))
        # The orchestrators' start-up sweep of open intents must be over before the runs add any.
        await asyncio.sleep(1.0)
        yield Fleet(gateway, bases)


async def _delete_keys(redis: Redis) -> None:
    keys = [k async for k in redis.scan_iter(match="{pm:*")]
    keys += [k async for k in redis.scan_iter(match="pm:nonce:*")]
    keys.append(LEASE_KEY)
    for start in range(0, len(keys), 1_000):
        await redis.delete(*keys[start : start + 1_000])


# --- the set-up ---------------------------------------------------------------------------------


def _users(count: int) -> list[str]:
    return [f"u-bench-{n:05d}" for n in range(count)]


async def _set_up(
    dsn: str, cipher: Cipher, users: Sequence[str], operations: frozenset[str] = frozenset({"P2P"})
) -> tuple[str, str]:
    """Open and fund the wallets, install the fee rules, make a key for `operations`: (key id, secret).

    The ledger is written directly, before any service starts (the ledger-writer must be its only
    writer once it runs); its handle is closed on return.
    """
    ledger = await open_ledger("embedded+" + dsn)
    conn = await db.connect(dsn)
    try:
        await open_operator_accounts(ledger, conn, [CURRENCY])
        specs = [chart.AccountSpec("user", user, CURRENCY, chart.Code.USER_WALLET) for user in users]
        await open_accounts(ledger, conn, specs)
        book = chart.ledger_of(CURRENCY)
        equity = ids.account_id("operator", "operator_equity", book, int(chart.Code.OPERATOR_EQUITY))
        funding = [
            tb.Transfer(
                id=tb.id(),
                debit_account_id=equity,
                credit_account_id=ids.account_id("user", user, book, int(chart.Code.USER_WALLET)),
                amount=FUNDS,
                ledger=book,
                code=2,  # an adjustment's transfer code
            )
            for user in users
        ]
        for start in range(0, len(funding), BATCH_MAX):
            results = await ledger.create_transfers(funding[start : start + BATCH_MAX])
            refused = {r.status for r in results} - {tb.CreateTransferStatus.CREATED}
            if refused:
                raise RuntimeError(f"funding the benchmark wallets failed: {refused}")
        for rule in _fee_rules():
            await insert_rule(conn, rule)
        made, secret = await create_key(
            conn,
            cipher,
            permissions=Permissions(operations=operations, owners=None),
            description="pm bench (saga)",
        )
    finally:
        await conn.close()
        await ledger.close()
    return made.key_id, secret


def _fee_rules() -> list[FeeRule]:
    """1 % before (a pending leg in the authorization), 1.00 flat after (posted at settlement)."""
    since = datetime.now(UTC) - timedelta(days=1)
    return [
        FeeRule(
            rule_id=PRE_RULE,
            version=0,
            amount="intent.amount / 100",
            timing="PRE",
            fee_account_code=int(chart.Code.FEE_REVENUE),
            priority=10,
            max_fee=1_000_000,
            active_from=since,
            description="pm bench: 1 %",
            operation_type="P2P",
            condition="true",
            payer="source",
            active_until=None,
        ),
        FeeRule(
            rule_id=POST_RULE,
            version=0,
            amount="100",
            timing="POST",
            fee_account_code=int(chart.Code.FEE_REVENUE),
            priority=20,
            max_fee=1_000_000,
            active_from=since,
            description="pm bench: 1.00 flat",
            operation_type="P2P",
            condition="true",
            payer="source",
            active_until=None,
        ),
    ]


def _uuid7() -> uuid.UUID:
    """As the gateway mints intent ids: 48 bits of Unix milliseconds, then version, variant, random."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


def _pairs(users: Sequence[str], count: int, rng: secrets.SystemRandom) -> list[tuple[str, str]]:
    pairs = []
    for _ in range(count):
        payer, payee = rng.sample(users, 2)
        pairs.append((payer, payee))
    return pairs


# --- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Scrape:
    fee_sum: float = 0.0
    fee_count: float = 0.0
    resumed: float = 0.0
    intake_sum: float = 0.0
    """The gateway's own time in `POST /v1/intents` (its request histogram)."""
    intake_count: float = 0.0

    def __sub__(self, other: _Scrape) -> _Scrape:
        return _Scrape(
            *(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True))
        )


async def _scrape(fleet: Fleet) -> _Scrape:
    """The orchestrators' fee-engine and resume figures, and the gateway's intake time, summed."""
    figures = dict.fromkeys(("fee_sum", "fee_count", "resumed", "intake_sum", "intake_count"), 0.0)
    names = {
        "pm_fee_evaluation_seconds_sum": "fee_sum",
        "pm_fee_evaluation_seconds_count": "fee_count",
        "pm_intents_resumed_total": "resumed",
        "pm_gateway_request_seconds_sum": "intake_sum",
        "pm_gateway_request_seconds_count": "intake_count",
    }
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        for base in [*fleet.orchestrators, fleet.gateway]:
            text = (await client.get(base + "/metrics")).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    figure = names.get(sample.name)
                    if figure is None:
                        continue
                    if figure.startswith("intake") and sample.labels.get("route") != PATH:
                        continue
                    figures[figure] += sample.value
    return _Scrape(**figures)


# --- waiting and reading the outcome ------------------------------------------------------------


async def _wait_terminal(conn: db.Conn, redis: Redis, streams: Sequence[StreamSpec] = WATCHED) -> str | None:
    """Wait until no intent is open; None, or (when none finished for `STALL_S`) what `streams`
    held then, to tell a stuck fleet from a slow one."""
    last, progress = -1, time.monotonic()
    while True:
        open_now = int(await conn.fetchval(COUNT_OPEN))
        if open_now == 0:
            return None
        if open_now != last:
            last, progress = open_now, time.monotonic()
        elif time.monotonic() - progress > STALL_S:
            held = [f"{spec.name} {await _held(redis, spec.name)}" for spec in streams]
            unpublished = int(await conn.fetchval(COUNT_UNPUBLISHED))
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


async def _quiet(conn: db.Conn, redis: Redis) -> None:
    """Wait (at most `STALL_S`) until the outbox is published and the reconciler has read every event:
    the next run must not share the machine with the previous one's tail."""
    deadline = time.monotonic() + STALL_S
    while time.monotonic() < deadline:
        if not await conn.fetchval(COUNT_UNPUBLISHED) and await _held(redis, EVENTS.name) in ("0", "missing"):
            return
        await asyncio.sleep(POLL_S)


def _stats(values_s: list[float]) -> tuple[float, float, float, float]:
    """(p50, p95, p99, mean) in ms."""
    ordered = sorted(values_s)
    if not ordered:
        nan = float("nan")
        return nan, nan, nan, nan
    p50, p95, p99 = (_percentile(ordered, q) * 1000 for q in (0.50, 0.95, 0.99))
    return p50, p95, p99, sum(ordered) / len(ordered) * 1000


async def _outcome(
    conn: db.Conn,
    name: str,
    started: Mapping[str, float],
    first_stage: tuple[str, str | None],
    metrics: _Scrape,
    stall: str | None,
    chain: Sequence[str] = CHAIN,
    timeline_sql: str = SELECT_TIMELINE,
) -> Run:
    """The run's figures from the timeline of the intents in `started` (intent id → start, epoch s).

    `first_stage`: the first stage's name and the timeline state it ends at (None: `chain[0]` is the
    first state the timeline records after the start). `chain`: the states every intent passes after
    that, ending with SETTLED; `timeline_sql` reads (intent_id, to_state, at) rows of the intents
    named by its one parameter (a state written twice: the row read last counts).
    """
    id_list = list(started)
    timeline: dict[str, dict[str, float]] = {}
    for row in await conn.fetch(timeline_sql, id_list):
        timeline.setdefault(row["intent_id"], {})[row["to_state"]] = row["at"].timestamp()
    failures: Counter[str] = Counter()
    unfinished: Counter[str] = Counter()
    settled = 0
    for row in await conn.fetch(SELECT_OUTCOMES, id_list):
        if row["state"] == "SETTLED":
            settled += row["n"]
        elif row["state"] == "FAILED":
            failures[row["failure_code"]] += row["n"]
        else:
            unfinished[row["state"]] += row["n"]

    first_name, first_state = first_stage
    chain = ([first_state] if first_state else []) + list(chain)
    names = [first_name] + [f"{a} → {b}" for a, b in zip(chain, chain[1:], strict=False)]
    spans: list[list[float]] = [[] for _ in names]
    totals: list[float] = []
    ends: list[float] = []
    for intent_id, start in started.items():
        at = timeline.get(intent_id, {})
        ends += [at[s] for s in TERMINAL if s in at]
        if "SETTLED" not in at or any(s not in at for s in chain):
            continue
        points = [start] + [at[s] for s in chain]
        for i, (a, b) in enumerate(zip(points, points[1:], strict=False)):
            spans[i].append(b - a)
        totals.append(at["SETTLED"] - start)
    stages = [Stage(n, *_stats(s)) for n, s in zip(names, spans, strict=True)]
    first = min(started.values()) if started else 0.0
    seconds = (max(ends) - first) if ends else 0.0
    p50, p95, p99, mean = _stats(totals)
    return Run(
        name=name,
        submitted=len(started),
        settled=settled,
        failures=dict(failures),
        unfinished=sum(unfinished.values()),
        unfinished_states=dict(unfinished),
        stall=stall,
        seconds=seconds,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        mean_ms=mean,
        stages=stages,
        fee_eval_us=metrics.fee_sum / metrics.fee_count * 1e6 if metrics.fee_count else None,
        resumed=int(metrics.resumed),
    )


# --- the pipeline run ---------------------------------------------------------------------------


async def _pipeline(
    conn: db.Conn, redis: Redis, fleet: Fleet, key_id: str, pairs: Sequence[tuple[str, str]]
) -> Run:
    intent_ids = [_uuid7() for _ in pairs]
    for start in range(0, len(pairs), 5_000):
        chunk = slice(start, start + 5_000)
        await conn.execute(
            INSERT_INTENTS,
            key_id,
            secrets.token_bytes(32),
            AMOUNT,
            CURRENCY,
            intent_ids[chunk],
            [p for p, _ in pairs[chunk]],
            [p for _, p in pairs[chunk]],
        )
    before = await _scrape(fleet)
    published = await _publish(
        redis,
        [
            _submitted(str(intent_id), key_id, payer, payee)
            for intent_id, (payer, payee) in zip(intent_ids, pairs, strict=True)
        ],
    )
    stall = await _wait_terminal(conn, redis)
    metrics = await _scrape(fleet) - before
    return await _outcome(
        conn, "pipeline (XADD to pm:intents)", published, ("published → VALIDATED", None), metrics, stall
    )


async def _publish(redis: Redis, submitted: Sequence[messages.IntentSubmitted]) -> dict[str, float]:
    """Publish `submitted` onto `pm:intents` in order, `PUBLISH_CHUNK` at a time, as fast as
    back-pressure admits: intent id → when its chunk was published (epoch s)."""
    publisher = Publisher(redis, maxlen=STREAM_MAXLEN)
    published: dict[str, float] = {}
    for start in range(0, len(submitted), PUBLISH_CHUNK):
        batch = submitted[start : start + PUBLISH_CHUNK]
        while True:
            at = time.time()
            try:
                await publisher.publish_many(INTENTS, batch)
                break
            except BackPressureError:
                await asyncio.sleep(BACKPRESSURE_SLEEP_S)
        published.update((m.intent_id, at) for m in batch)
    return published


def _submitted(intent_id: str, key_id: str, payer: str, payee: str) -> messages.IntentSubmitted:
    return messages.IntentSubmitted(
        intent_id=intent_id,
        message_id=f"{intent_id}:submitted",
        produced_at=messages.now(),
        type="P2P",
        amount=AMOUNT,
        currency=CURRENCY,
        source=messages.Party(kind="user", id=payer),
        target=messages.Party(kind="user", id=payee),
        key_id=key_id,
        from_name=payer,
        to_name=payee,
    )


# --- the HTTP run -------------------------------------------------------------------------------


@dataclass
class _Sent:
    scheduled: float
    sent: float = 0.0
    answered: float = 0.0
    status: int | None = None
    intent_id: str | None = None
    error: str | None = None


def _body(payer: str, payee: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": "P2P",
            "amount": AMOUNT,
            "currency": CURRENCY,
            "from": {"kind": "user", "id": payer},
            "to": {"kind": "user", "id": payee},
            "fromName": payer,
            "toName": payee,
            "comment": "pm bench",
        }
    )


async def _offer(base: str, auth: PMAuth, pairs: Sequence[tuple[str, str]], rate: float) -> list[_Sent]:
    """Send one request per pair on a fixed schedule (`rate`/s), never waiting for answers first.

    Each request takes an idle client with one keep-alive connection (one httpx client with a pool
    of many connections costs the generator far more CPU per request). `CLIENTS` are made and
    connected before the clock starts, sharing one TLS context (httpx loads the CA bundle for each
    client it makes otherwise, about 10 ms of CPU each: made on demand, they starved the schedule);
    when every one is busy a request gets a new client rather than waiting.
    """
    tls = ssl.create_default_context()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)

    def client() -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=base, auth=auth, limits=limits, timeout=REQUEST_TIMEOUT_S, trust_env=False, verify=tls
        )

    made = [client() for _ in range(CLIENTS)]
    idle = list(made)
    bodies = [_body(payer, payee) for payer, payee in pairs]

    async def send(record: _Sent, body: bytes) -> None:
        if idle:
            spare = idle.pop()
        else:
            spare = client()
            made.append(spare)
        headers = {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}
        record.sent = time.time()
        try:
            response = await spare.post(PATH, content=body, headers=headers)
            record.status = response.status_code
            if response.status_code == 202:
                record.intent_id = _created.decode(response.content).id
            elif response.status_code != 503:
                record.error = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            record.error = repr(exc)
        record.answered = time.time()
        idle.append(spare)

    records: list[_Sent] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await asyncio.gather(*(c.get("/readyz") for c in made))  # connected before the clock starts
        clock0, wall0 = time.perf_counter(), time.time()
        for n, body in enumerate(bodies):
            delay = clock0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = _Sent(scheduled=wall0 + n / rate)
            records.append(record)
            tasks.append(asyncio.create_task(send(record, body)))
        await asyncio.gather(*tasks)
    finally:
        for spare in made:
            await spare.aclose()
    return records


async def _http(
    conn: db.Conn,
    redis: Redis,
    fleet: Fleet,
    key: tuple[str, str],
    pairs: Sequence[tuple[str, str]],
    rate: float,
    warmup: int,
) -> Run:
    """Offer `pairs` at `rate`/s; the first `warmup` of them warm the fleet up and are not measured
    (the gateway's first requests open its database connections and fill its key cache: measured,
    that transient doubled the p99 of a 5 s run). Errors and 503s are counted over every request."""
    before = await _scrape(fleet)
    wall, cpu = time.perf_counter(), time.process_time()
    records = await _offer(fleet.gateway, PMAuth(*key), pairs, rate)
    generator_cpu = (time.process_time() - cpu) / (time.perf_counter() - wall)
    stall = await _wait_terminal(conn, redis)
    metrics = await _scrape(fleet) - before
    measured = records[warmup:]
    accepted = [r for r in measured if r.intent_id is not None]
    errors = [r for r in records if r.error is not None]
    window = measured[-1].scheduled - measured[0].scheduled + 1 / rate if measured else 0.0
    answers = _stats([r.answered - r.sent for r in accepted])
    outcome = await _outcome(
        conn,
        "HTTP (signed POST /v1/intents)",
        {r.intent_id: r.sent for r in accepted if r.intent_id is not None},
        ("request → CREATED (gateway)", "CREATED"),
        metrics,
        stall,
    )
    return dataclasses.replace(
        outcome,
        offered_rate=len(measured) / window if window else 0.0,
        accepted_rate=len(accepted) / window if window else 0.0,
        answer_p50_ms=answers[0],
        answer_p99_ms=answers[2],
        rejected_503=sum(1 for r in records if r.status == 503),
        errors=len(errors),
        first_error=errors[0].error if errors else None,
        generator_late_ms=max((r.sent - r.scheduled for r in records), default=0.0) * 1000,
        generator_cpu=generator_cpu,
        warmup_s=warmup / rate,
        intake_mean_ms=metrics.intake_sum / metrics.intake_count * 1000 if metrics.intake_count else None,
    )


# --- the run ------------------------------------------------------------------------------------


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    intents: int = 20_000,
    rate: float = HTTP_GOAL_RATE,
    seconds: float = 5.0,
    orchestrators: int = 1,
    users: int = USERS,
    warmup_s: float = WARMUP_S,
    rates: Sequence[float] | None = None,
) -> SagaResult:
    """The pipeline run of `intents`, then an HTTP run at each of `rates` (default: `rate` alone)
    per second, in that order, each for `warmup_s` + `seconds` (only the last `seconds` measured),
    all on one fleet, each after the previous one's tail has drained."""
    offered_rates = list(rates) if rates else [rate]
    if any(r <= 0 for r in offered_rates):
        raise ValueError(f"offered rates must be positive: {offered_rates}")
    tune_gc()
    url = bench_redis_url(redis_url)
    kek = base64.b64encode(secrets.token_bytes(32)).decode()
    dsn = with_database(server_dsn, f"pm_bench_saga_{secrets.token_hex(4)}")
    redis = connect(url, name="pm-bench-saga")
    rng = secrets.SystemRandom()
    names = _users(users)
    await ensure_database(dsn)
    try:
        await migrate(dsn)
        key = await _set_up(dsn, Cipher.from_setting(kek), names)
        await _delete_keys(redis)
        try:
            await provision(redis, 1)
            async with _fleet(dsn, url, kek, orchestrators) as fleet:
                conn = await db.connect(dsn, application_name="pm-bench-saga")
                try:
                    pipeline = await _pipeline(conn, redis, fleet, key[0], _pairs(names, intents, rng))
                    http_runs = []
                    for offered_rate in offered_rates:
                        await _quiet(conn, redis)
                        warm = round(offered_rate * warmup_s)
                        offered = _pairs(names, warm + max(1, round(offered_rate * seconds)), rng)
                        http_runs.append(await _http(conn, redis, fleet, key, offered, offered_rate, warm))
                finally:
                    await conn.close()
        finally:
            with contextlib.suppress(ResponseError):
                await _delete_keys(redis)
    finally:
        await redis.aclose()
        await drop_database(dsn)
    return SagaResult(
        orchestrators=orchestrators,
        users=users,
        pipeline=pipeline,
        http_runs=http_runs,
        http_seconds=seconds,
    )


# --- the report ---------------------------------------------------------------------------------


def goals_met(result: SagaResult) -> bool:
    """Every run clean, the pipeline at its goal, and every HTTP run offered at most the goal's rate
    within the p99 goal."""
    return (
        result.pipeline.clean
        and all(run.clean for run in result.http_runs)
        and result.pipeline.settled_rate >= PIPELINE_GOAL
        and all(run.p99_ms <= HTTP_P99_GOAL_MS for run in result.http_runs if _held_to_p99_goal(run))
    )


def _failures(run: Run) -> str:
    parts = [f"{code} {n:,}" for code, n in sorted(run.failures.items())]
    if run.unfinished:
        states = ", ".join(f"{state} {n:,}" for state, n in sorted(run.unfinished_states.items()))
        parts.append(f"unfinished {run.unfinished:,} ({states})")
    if run.stall:
        parts.append(run.stall)
    if run.errors:
        parts.append(f"errors {run.errors:,} (first: {run.first_error})")
    return ", ".join(parts) or "none"


def table(result: SagaResult) -> Table:
    """Per run: settled/s, latency, failures, fee-engine time, each figure against its goal."""
    p, h = result.pipeline, result.http
    offers = "; ".join(
        f"at {run.offered_rate or 0:,.0f}/s offered: accepted {run.accepted_rate or 0:,.0f}/s, "
        f"{run.rejected_503:,} answered 503, 202 in p50 {run.answer_p50_ms or 0:.1f} ms / "
        f"p99 {run.answer_p99_ms or 0:.1f} ms as the client saw it, the gateway's own mean "
        f"{run.intake_mean_ms or 0:.1f} ms, generator late by at most {run.generator_late_ms:.0f} ms, "
        f"using {run.generator_cpu:.0%} of a core"
        for run in result.http_runs
    )
    resumed = p.resumed + sum(run.resumed for run in result.http_runs)
    out = Table(
        title=(
            f"Saga: settled P2P intents/s and accept → SETTLED latency "
            f"({result.orchestrators} orchestrators, {result.users:,} wallets)"
        ),
        caption=Text(
            "fleet: ledger-writer, orchestrators, reconciler and gateway as real processes with their "
            "default settings, on one machine with PostgreSQL, Redis and this load generator; one PRE "
            "and one POST fee rule on every payment. pipeline: IntentSubmitted published straight to "
            "pm:intents as fast as back-pressure admits; HTTP: signed requests offered open-loop "
            f"at each rate in turn, each after {h.warmup_s:g} s of warm-up at that rate ({offers}). "
            "Latency: from publish or request to the SETTLED row's `at` (pipeline: everything is "
            "offered at once, so it is mostly the wait behind the intents queued ahead, up to the "
            "back-pressure threshold); settled/s: settled intents over first publish or request to "
            "the last SETTLED. "
            f"The p99 goal holds runs offered at most {HTTP_GOAL_RATE:,.0f}/s. "
            f"Intents resumed by the sweep: {resumed:,}."
        ),  # Text: no markup or emoji codes
    )
    out.add_column("run")
    out.add_column("intents", justify="right")
    out.add_column("settled", justify="right")
    out.add_column("settled/s", justify="right")
    out.add_column(f"goal ≥ {PIPELINE_GOAL:,.0f}/s")
    out.add_column("p50", justify="right")
    out.add_column("p95", justify="right")
    out.add_column("p99", justify="right")
    out.add_column(f"goal p99 ≤ {HTTP_P99_GOAL_MS:.0f} ms")
    out.add_column("fee engine / intent", justify="right")
    out.add_column("failed / unfinished")
    for run, is_pipeline in ((p, True), *((run, False) for run in result.http_runs)):
        rate_verdict = ("met" if run.settled_rate >= PIPELINE_GOAL else "MISSED") if is_pipeline else ""
        p99_verdict = (
            ""
            if is_pipeline
            else ("met" if run.p99_ms <= HTTP_P99_GOAL_MS else "MISSED")
            if _held_to_p99_goal(run)
            else "not held"
        )
        out.add_row(
            run.name + ("" if is_pipeline else f" at {run.offered_rate or 0:,.0f}/s offered"),
            f"{run.submitted:,}",
            f"{run.settled:,}",
            f"{run.settled_rate:,.0f}",
            rate_verdict,
            f"{run.p50_ms:,.0f} ms",
            f"{run.p95_ms:,.0f} ms",
            f"{run.p99_ms:,.0f} ms",
            p99_verdict,
            "—" if run.fee_eval_us is None else f"{run.fee_eval_us:,.0f} µs",
            _failures(run),
        )
    return out


def stages_table(result: SagaResult) -> Table:
    """Where the time goes: each stage of each run, from the intents' timelines."""
    out = Table(
        title="Saga: where the time goes (per settled intent, from pm.intent_event)",
        caption=Text(
            "→ VALIDATED: intake, validation, pricing, limits and the authorize command sent; "
            "→ AUTHORIZED: the ledger-writer's linked pendings and its result read back; "
            "→ SETTLED: the settle command (posts and POST fees) and the settlement's projections. "
            "Means add up to the total; percentiles need not."
        ),
    )
    out.add_column("run")
    out.add_column("stage")
    out.add_column("p50", justify="right")
    out.add_column("p95", justify="right")
    out.add_column("p99", justify="right")
    out.add_column("mean", justify="right")
    for run in (result.pipeline, *result.http_runs):
        short = _short(run)
        for stage in run.stages:
            out.add_row(short, stage.name, *stage.cells())
        out.add_row(
            short,
            "total",
            *Stage("total", run.p50_ms, run.p95_ms, run.p99_ms, run.mean_ms).cells(),
            end_section=True,
        )
    return out


def _short(run: Run) -> str:
    """The run's short name: "pipeline", or "HTTP 300/s"."""
    short = run.name.split(" ")[0]
    return short if run.offered_rate is None else f"{short} {run.offered_rate:,.0f}/s"


def report(result: SagaResult, console: Console) -> bool:
    """Print both tables on `console`; True when both goals were met with every intent settled."""
    console.print(table(result))
    console.print(stages_table(result))
    return goals_met(result)


# --- the figures for `pm bench`'s report --------------------------------------------------------

PIPELINE_GROUP = "pipeline runs (everything published at once; publish → SETTLED)"
HTTP_GROUP = "saga, HTTP runs (open loop; request → SETTLED)"


def stage_times(stage: Stage) -> bench_model.StageTimes:
    return bench_model.StageTimes(
        name=stage.name,
        p50_ms=bench_model.finite(stage.p50_ms),
        p95_ms=bench_model.finite(stage.p95_ms),
        p99_ms=bench_model.finite(stage.p99_ms),
        mean_ms=bench_model.finite(stage.mean_ms),
    )


def stage_set(group: str, name: str, run: Run) -> bench_model.StageSet:
    return bench_model.StageSet(
        group=group,
        name=name,
        stages=[stage_times(stage) for stage in run.stages],
        total=stage_times(Stage("total", run.p50_ms, run.p95_ms, run.p99_ms, run.mean_ms)),
    )


def _problems(run: Run) -> str | None:
    found = _failures(run)
    return None if found == "none" else f"NOT clean: {found}"


def _http_benchmark(run: Run) -> bench_model.Benchmark:
    held = _held_to_p99_goal(run)
    offered = run.offered_rate or 0.0
    return bench_model.Benchmark(
        name=f"saga, HTTP: signed POST {PATH} at {offered:,.0f}/s offered, request → SETTLED",
        unit="settled/s",
        throughput=run.settled_rate,
        p50_ms=bench_model.finite(run.p50_ms),
        p95_ms=bench_model.finite(run.p95_ms),
        p99_ms=bench_model.finite(run.p99_ms),
        baseline_name="offered load",
        baseline=run.offered_rate,
        ratio=run.settled_rate / offered if offered else None,
        goal=f"p99 ≤ {HTTP_P99_GOAL_MS:.0f} ms" + ("" if held else f" (at ≤ {HTTP_GOAL_RATE:,.0f}/s only)"),
        goal_met=(run.clean and run.p99_ms <= HTTP_P99_GOAL_MS) if held else None,
        note=_problems(run),
        extra=bench_model.known(
            {
                "accepted/s": run.accepted_rate,
                "answered 503": float(run.rejected_503),
                "errors": float(run.errors),
                "202 p50 ms (client)": run.answer_p50_ms,
                "202 p99 ms (client)": run.answer_p99_ms,
                "gateway mean ms (own histogram)": run.intake_mean_ms,
                "generator late ms (max)": run.generator_late_ms,
                "generator CPU (cores)": run.generator_cpu,
                "fee engine µs per intent": run.fee_eval_us,
            }
        ),
    )


def section(result: SagaResult) -> bench_model.Section:
    """The figures for `pm bench`'s report: the pipeline run against its goal, each HTTP run beside
    the load offered, the load sweep, and the stages of every run."""
    p = result.pipeline
    pipeline = bench_model.Benchmark(
        name=f"saga, pipeline: {p.submitted:,} IntentSubmitted straight onto pm:intents, publish → SETTLED",
        unit="settled/s",
        throughput=p.settled_rate,
        p50_ms=bench_model.finite(p.p50_ms),
        p95_ms=bench_model.finite(p.p95_ms),
        p99_ms=bench_model.finite(p.p99_ms),
        goal=f"≥ {PIPELINE_GOAL:,.0f}/s",
        goal_met=p.clean and p.settled_rate >= PIPELINE_GOAL,
        note=_problems(p) or "latency: mostly the wait behind the intents queued ahead",
        extra=bench_model.known({"fee engine µs per intent": p.fee_eval_us}),
    )
    sweep = bench_model.LoadSweep(
        name=f"saga: signed POST {PATH} offered open-loop, P2P to SETTLED",
        unit="intents/s",
        latency="request sent → the intent's SETTLED timeline row",
        points=[
            bench_model.LoadPoint(
                offered=run.offered_rate or 0.0,
                accepted=bench_model.finite(run.accepted_rate),
                achieved=run.settled_rate,
                p50_ms=bench_model.finite(run.p50_ms),
                p95_ms=bench_model.finite(run.p95_ms),
                p99_ms=bench_model.finite(run.p99_ms),
                rejected=run.rejected_503,
                errors=run.errors,
            )
            for run in result.http_runs
        ],
        p99_goal_ms=HTTP_P99_GOAL_MS,
    )
    h = result.http
    return bench_model.Section(
        name="saga",
        description=(
            f"The whole fleet as real processes with their default settings ({result.orchestrators} "
            f"orchestrator{'s' if result.orchestrators > 1 else ''}, ledger-writer, reconciler, gateway), "
            f"{result.users:,} funded wallets, a PRE and a POST fee rule on every P2P payment. HTTP runs: "
            f"{h.warmup_s:g} s warm-up then {result.http_seconds:g} s measured at each offered rate, "
            "in the order given."
        ),
        benchmarks=[pipeline, *(_http_benchmark(run) for run in result.http_runs)],
        stages=[
            stage_set(PIPELINE_GROUP, "saga pipeline (P2P)", p),
            *(stage_set(HTTP_GROUP, _short(run), run) for run in result.http_runs),
        ],
        sweeps=[sweep],
        goals_met=goals_met(result),
    )
