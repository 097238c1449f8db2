"""The fleet the saga, PSP and merchant-charge benchmarks run, as real processes with their default
settings, and what its metrics say.

`stores` sets up the stores of such a run: a throw-away database with the workload's wallets, fee
rules and key (`workload.set_up`), Redis database `harness.REDIS_DB` with every `{pm:*` key deleted
before and after (the front-door benchmark starts its own members on them). `running` adds the
fleet: the ledger-writer, `orchestrators` orchestrators (each its own consumer name), the reconciler
(it drains `pm:events`, as in production) and the gateway; for a run that pays out, the IPPS sandbox
and adapter-ipps too. The orchestrators resume stalled intents
only after an hour: a pipeline run's intents are all inserted before the first is published, and a
sweep taking in those still waiting for their message would measure the benchmark, not the saga.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared import db, fleet
from pm_shared.keys.crypto import Cipher
from pm_shared.runtime import tune_gc
from pm_shared.streams import connect
from pm_shared.streams.provision import provision
from pm_tools.bench import harness, workload

INTAKE = "/v1/intents"
"""The gateway's route that takes intents."""
RESUME_AFTER_S = 3_600
KEY_PATTERNS = ("{pm:*", "pm:nonce:*")
"""Every key of the fleet in `harness.REDIS_DB` (with the writer's lease)."""


@dataclass(frozen=True)
class Fleet:
    gateway: str
    orchestrators: list[str]
    """Base URLs of the orchestrators (their /metrics)."""
    sandbox: str | None = None
    """Base URL of the IPPS sandbox, when the fleet pays out."""
    pids: Mapping[str, int] = dataclasses.field(default_factory=dict)
    """Each service's process id, by role (`gateway`, `orchestrator-0`, …), to read its CPU time."""
    reconciler: str = ""
    """Base URL of the reconciler (its /metrics)."""

    def cpu(self) -> dict[str, float | None]:
        """CPU seconds used so far by each service (`harness.cpu_seconds`)."""
        return {role: harness.cpu_seconds(pid) for role, pid in self.pids.items()}


@contextlib.asynccontextmanager
async def start(
    dsn: str,
    redis_url: str,
    kek: str,
    orchestrators: int,
    ipps_latency_ms: int | None = None,
    gateway_variables: Mapping[str, str] | None = None,
) -> AsyncIterator[Fleet]:
    """Ledger-writer, orchestrators, reconciler and gateway (with `gateway_variables` besides the
    fleet's), each ready; with `ipps_latency_ms`, the IPPS sandbox first (answering that late) and
    adapter-ipps last. Stopped in reverse order on exit, so the adapter never runs without its PSP."""

    def variables(role: str) -> dict[str, str]:
        return harness.service_variables(dsn, redis_url, role, kek)

    async with contextlib.AsyncExitStack() as stack:
        sandbox = None
        if ipps_latency_ms is not None:
            # The sandbox reads the fleet's common PM_LOG_LEVEL too.
            quiet_late = {"PM_IPPS_SANDBOX_LATENCY_MS": str(ipps_latency_ms), "PM_LOG_LEVEL": "WARNING"}
            sandbox = (await stack.enter_async_context(harness.started(fleet.IPPS_SANDBOX, quiet_late))).base
        writer = {**variables("ledger-writer"), "PM_LEDGER_WRITER_LEASE_KEY": harness.WRITER_LEASE_KEY}
        started = await stack.enter_async_context(harness.started(fleet.LEDGER_WRITER, writer))
        pids = {"ledger-writer": started.process.pid}
        bases = []
        for n in range(orchestrators):
            env = {**variables(f"orchestrator-{n}"), "PM_ORCHESTRATOR_RESUME_AFTER_S": str(RESUME_AFTER_S)}
            started = await stack.enter_async_context(
                harness.started(fleet.ORCHESTRATOR, env, f"orchestrator {n}")
            )
            bases.append(started.base)
            pids[f"orchestrator-{n}"] = started.process.pid
        reconciler = await stack.enter_async_context(
            harness.started(fleet.RECONCILER, variables("reconciler"))
        )
        # The other reader of pm:events: without it the stream would fill up to its back-pressure threshold.
        await stack.enter_async_context(harness.started(fleet.WEBHOOKS, variables("webhooks")))
        gateway_env = {**variables("gateway"), **(gateway_variables or {})}
        gateway = await stack.enter_async_context(harness.started(fleet.GATEWAY, gateway_env))
        pids |= {"reconciler": reconciler.process.pid, "gateway": gateway.process.pid}
        # The orchestrators' start-up sweep of open intents must be over before the runs add any.
        await asyncio.sleep(1.0)
        if sandbox is not None:
            adapter = {**variables("adapter-ipps"), "PM_ADAPTER_IPPS_IPPS_URL": sandbox}
            await stack.enter_async_context(harness.started(fleet.ADAPTER_IPPS, adapter))
        yield Fleet(gateway.base, bases, sandbox, pids, reconciler.base)


@dataclass(frozen=True)
class Rig:
    """Everything a run of intents works with."""

    fleet: Fleet
    conn: db.Conn
    redis: Redis
    key: tuple[str, str]
    """The service key made for the run: (key id, secret)."""
    users: list[str]
    """The funded wallets."""
    dsn: str
    """The run's throw-away database."""
    kek: str
    """The fleet's `PM_KEY_ENCRYPTION_KEY` (to make more keys the gateway can read)."""


@dataclass(frozen=True)
class Stores:
    """A run's stores, set up and before any service starts."""

    dsn: str
    """The run's throw-away database."""
    redis_url: str
    """Database `harness.REDIS_DB` of the server given."""
    redis: Redis
    kek: str
    key: tuple[str, str]
    users: list[str]


@contextlib.asynccontextmanager
async def stores(
    server_dsn: str,
    redis_url: str,
    label: str,
    *,
    users: int,
    setup: workload.Setup = workload.P2P_ONLY,
) -> AsyncIterator[Stores]:
    """A throw-away database (`pm_bench_<label>_…`) set up with `users` funded wallets and what `setup`
    asks for (a key, fee rules); Redis database `harness.REDIS_DB` of
    `redis_url` with its streams provisioned and every key of the fleet deleted before and after."""
    tune_gc()
    url = harness.redis_url(redis_url)
    kek = harness.key_encryption_key()
    names = workload.user_names(users)
    async with harness.database(server_dsn, label) as dsn:
        redis = connect(url, name=f"pm-bench-{label}")
        try:
            key = await workload.set_up(dsn, Cipher.from_setting(kek), names, setup)
            await _delete_keys(redis)
            try:
                await provision(redis, 1)
                yield Stores(dsn, url, redis, kek, key, names)
            finally:
                with contextlib.suppress(ResponseError):
                    await _delete_keys(redis)
        finally:
            await redis.aclose()


@contextlib.asynccontextmanager
async def running(
    server_dsn: str,
    redis_url: str,
    label: str,
    *,
    orchestrators: int,
    users: int,
    setup: workload.Setup = workload.P2P_ONLY,
    ipps_latency_ms: int | None = None,
    gateway_variables: Mapping[str, str] | None = None,
) -> AsyncIterator[Rig]:
    """The fleet on the `stores` of the run; all gone on exit."""
    async with stores(server_dsn, redis_url, label, users=users, setup=setup) as made:
        dsn, url, kek = made.dsn, made.redis_url, made.kek
        async with start(dsn, url, kek, orchestrators, ipps_latency_ms, gateway_variables) as started:
            conn = await db.connect(dsn, application_name=f"pm-bench-{label}")
            try:
                yield Rig(started, conn, made.redis, made.key, made.users, dsn, kek)
            finally:
                await conn.close()


async def _delete_keys(redis: Redis) -> None:
    await harness.delete_keys(redis, KEY_PATTERNS, [harness.WRITER_LEASE_KEY])


# --- metrics ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scrape:
    """Counters of the fleet's metrics, summed over its processes (subtract two for a run's share)."""

    fee_sum: float = 0.0
    fee_count: float = 0.0
    resumed: float = 0.0
    intake_sum: float = 0.0
    """The gateway's own time in `POST /v1/intents` (its request histogram)."""
    intake_count: float = 0.0

    def __sub__(self, other: Scrape) -> Scrape:
        return Scrape(
            *(a - b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other), strict=True))
        )

    @property
    def fee_eval_us(self) -> float | None:
        """Mean fee-engine time per priced intent."""
        return self.fee_sum / self.fee_count * 1e6 if self.fee_count else None

    @property
    def intake_mean_ms(self) -> float | None:
        return self.intake_sum / self.intake_count * 1000 if self.intake_count else None


METRICS = {
    "pm_fee_evaluation_seconds_sum": "fee_sum",
    "pm_fee_evaluation_seconds_count": "fee_count",
    "pm_intents_resumed_total": "resumed",
    "pm_gateway_request_seconds_sum": "intake_sum",
    "pm_gateway_request_seconds_count": "intake_count",
}
"""Prometheus sample → `Scrape` field."""


async def scrape(running: Fleet) -> Scrape:
    """The orchestrators' fee-engine and resume figures, and the gateway's intake time, summed."""
    figures = dict.fromkeys(METRICS.values(), 0.0)
    async with httpx.AsyncClient(timeout=10, trust_env=False) as client:
        for base in [*running.orchestrators, running.gateway]:
            text = (await client.get(base + "/metrics")).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    figure = METRICS.get(sample.name)
                    if figure is None:
                        continue
                    if figure.startswith("intake") and sample.labels.get("route") != INTAKE:
                        continue
                    figures[figure] += sample.value
    return Scrape(**figures)
