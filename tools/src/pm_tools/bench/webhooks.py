"""Benchmark of merchant webhooks (issue 18): how many deliveries pm-webhooks makes per second to a
local receiver, and how long an event takes to reach the merchant at a steady 300 events/s.

- **deliveries/s**: `deliveries` deliveries made beforehand (one body of about 1 KB, `merchants`
  endpoints, one per merchant), released at once to a pm-webhooks process; the time until the last is
  DELIVERED. Baseline, measured in the same run: the same bodies POSTed straight to the same receiver
  by aiohttp (the sender's client) at the sender's concurrency (endpoints × per-endpoint concurrency),
  signed the same way — the sender's ratio to it is what claiming, signing, the SSRF check and
  recording every attempt cost.
- **event → delivered**: settled MINIAPP_CREDIT intents of those merchants, their state changes put
  on `pm:events` at `rate`/s for `seconds`; for each, from the moment it was published to the moment
  its delivery was recorded DELIVERED (`delivered_at`, after the receiver's 2xx). Goal: p99 ≤ 500 ms
  at 300 events/s.

The receiver (`pm_tools.bench.receiver`) is a process of its own, so it shares the cores as a
merchant's server on the same machine would, but not this process's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec
from rich.table import Table

from pm_shared import db, fleet
from pm_shared.keys.crypto import Cipher
from pm_shared.messages import IntentStateChanged, now
from pm_shared.streams import Publisher, connect
from pm_shared.streams.names import EVENTS
from pm_shared.webhooks import signing
from pm_tools import processes
from pm_tools.bench import harness, model, services
from pm_tools.bench import queries as q
from pm_tools.testing import webhooks as kit

DELIVERIES = 5_000
MERCHANTS = 8
ENDPOINT_CONCURRENCY = 4
RATE = 300.0
SECONDS = 20.0
LATENCY_GOAL_MS = 500.0
DRAIN_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class WebhooksResult:
    deliveries: int
    sender_s: float
    raw_s: float
    """aiohttp alone (the baseline)."""
    failed_attempts: int
    latencies_s: list[float]
    events: int
    rate: float
    seconds: float

    @property
    def sender_rate(self) -> float:
        return self.deliveries / self.sender_s

    @property
    def raw_rate(self) -> float:
        return self.deliveries / self.raw_s

    def latency_ms(self, q_: float) -> float:
        return harness.percentile(sorted(self.latencies_s), q_) * 1000


def _body() -> bytes:
    """About 1 KB, shaped as an `intent.settled` event is."""
    data = {"id": str(uuid.uuid4()), "type": "MINIAPP_CREDIT", "status": "SETTLED", "amount": 1500}
    data["padding"] = "x" * 850
    return msgspec.json.encode({"type": "intent.settled", "timestamp": now().isoformat(), "data": data})


@contextlib.asynccontextmanager
async def _receiver() -> AsyncIterator[str]:
    """The receiver process, ready: its URL."""
    port = processes.free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "pm_tools.bench.receiver", str(port), stdout=asyncio.subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + harness.READY_TIMEOUT_S
        while await asyncio.to_thread(harness.status, url) != 204:
            if process.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError("the webhook receiver did not start")
            await asyncio.sleep(0.1)
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()


async def _endpoints(conn: db.Conn, cipher: Cipher, url: str) -> list[kit.Endpoint]:
    made = []
    for i in range(MERCHANTS):
        merchant = await kit.merchant(conn, cipher, f"bench-m{i}-{secrets.token_hex(3)}")
        made.append(await kit.endpoint(conn, cipher, merchant, f"{url}/m{i}", ["intent.settled"]))
    return made


async def _raw_aiohttp(url: str, endpoints: list[kit.Endpoint], body: bytes, count: int) -> float:
    """Seconds to POST `count` signed bodies straight to the receiver at the sender's concurrency."""
    secrets_of = {e.endpoint_id: signing.parse(e.secret) for e in endpoints}
    queue = list(range(count))
    connector = aiohttp.TCPConnector(limit=len(endpoints) * ENDPOINT_CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def work(w: int) -> None:
            endpoint = endpoints[w % len(endpoints)]
            while queue:
                i = queue.pop()
                headers = signing.headers(
                    [secrets_of[endpoint.endpoint_id]], f"msg_{i}", int(time.time()), body
                )
                async with session.post(
                    f"{url}/m{w % len(endpoints)}", data=body, headers=headers, allow_redirects=False
                ) as reply:
                    await reply.read()
                    reply.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(work(w) for w in range(len(endpoints) * ENDPOINT_CONCURRENCY)))
        return time.perf_counter() - started


def _variables(dsn: str, redis_url: str, kek: str) -> dict[str, str]:
    return {
        **harness.service_variables(dsn, redis_url, "webhooks", kek),
        "PM_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8",
        "PM_WEBHOOKS_ENDPOINT_CONCURRENCY": str(ENDPOINT_CONCURRENCY),
    }


async def _wait_delivered(conn: db.Conn, count: int) -> float:
    """Seconds until `count` deliveries are DELIVERED (from the call)."""
    started = time.perf_counter()
    while await conn.fetchval(q.COUNT_DELIVERED) < count:
        if time.perf_counter() - started > DRAIN_TIMEOUT_S:
            raise RuntimeError(f"fewer than {count} webhooks delivered after {DRAIN_TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


@dataclass(frozen=True)
class Throughput:
    sender_s: float
    raw_s: float
    failed_attempts: int


async def measure_throughput(server_dsn: str, redis_url: str, deliveries: int) -> Throughput:
    """Seconds taken by the sender and by aiohttp alone for `deliveries` deliveries."""
    kek = harness.key_encryption_key()
    async with harness.database(server_dsn, "webhooks") as dsn, _receiver() as url:
        conn = await db.connect(dsn, application_name="pm-bench-webhooks")
        try:
            endpoints = await _endpoints(conn, Cipher.from_setting(kek), url)
            body = _body()
            raw_s = await _raw_aiohttp(url, endpoints, body, deliveries)
            chosen = [endpoints[i % len(endpoints)] for i in range(deliveries)]
            await conn.execute(
                q.INSERT_DELIVERIES,
                [f"msg_bench_{i}" for i in range(deliveries)],
                [e.endpoint_id for e in chosen],
                [e.merchant_id for e in chosen],
                body,
            )
            async with harness.started(fleet.WEBHOOKS, _variables(dsn, redis_url, kek)):
                await conn.execute(q.RELEASE_DELIVERIES)
                sender_s = await _wait_delivered(conn, deliveries)
            failed = await conn.fetchval(q.COUNT_FAILED_ATTEMPTS)
        finally:
            await conn.close()
    return Throughput(sender_s, raw_s, int(failed))


async def _publish_paced(redis_url: str, intent_ids: list[str], rate: float) -> dict[str, float]:
    """Each intent's SETTLED on `pm:events`, `rate` a second: when each was published (Unix s)."""
    redis = connect(redis_url)
    # Only pm-webhooks reads here; the reconciler's group on pm:events (provisioned with the stream)
    # has no consumer, so its lag must not count as back-pressure before the run is over.
    publisher = Publisher(redis, maxlen=100_000)
    published: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for i, intent_id in enumerate(intent_ids):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            change = IntentStateChanged(
                intent_id=intent_id,
                message_id=f"{intent_id}:state:SETTLED",
                produced_at=now(),
                state="SETTLED",
                previous="AUTHORIZED",
            )
            published[intent_id] = time.time()
            await publisher.publish(EVENTS, change)
    finally:
        await redis.aclose()
    return published


async def measure_latency(server_dsn: str, redis_url: str, rate: float, seconds: float) -> list[float]:
    """Event published → delivery recorded DELIVERED, in seconds, for `rate` × `seconds` events."""
    kek = harness.key_encryption_key()
    count = round(rate * seconds)
    redis = connect(redis_url)
    await harness.delete_keys(redis, services.KEY_PATTERNS)
    try:
        async with harness.database(server_dsn, "webhooks_lag") as dsn, _receiver() as url:
            conn = await db.connect(dsn, application_name="pm-bench-webhooks")
            try:
                endpoints = await _endpoints(conn, Cipher.from_setting(kek), url)
                keys = {e.merchant_id: await conn.fetchval(q.MERCHANT_KEY, e.merchant_id) for e in endpoints}
                ids = [str(uuid.uuid4()) for _ in range(count)]
                owners = [endpoints[i % len(endpoints)].merchant_id for i in range(count)]
                await conn.execute(
                    q.INSERT_MERCHANT_CREDITS,
                    [uuid.UUID(i) for i in ids],
                    owners,
                    [keys[m] for m in owners],
                    [f"u-bench-{i % 500}" for i in range(count)],
                )
                async with harness.started(fleet.WEBHOOKS, _variables(dsn, redis_url, kek)):
                    published = await _publish_paced(redis_url, ids, rate)
                    await _wait_delivered(conn, count)
                delivered: dict[str, float] = {r[0]: r[1] for r in await conn.fetch(q.SELECT_DELIVERED_AT)}
            finally:
                await conn.close()
    finally:
        await harness.delete_keys(redis, services.KEY_PATTERNS)
        await redis.aclose()
    return [delivered[i] - at for i, at in published.items() if i in delivered]


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    deliveries: int = DELIVERIES,
    rate: float = RATE,
    seconds: float = SECONDS,
) -> WebhooksResult:
    redis_url = harness.redis_url(redis_url)
    made = await measure_throughput(server_dsn, redis_url, deliveries)
    latencies = await measure_latency(server_dsn, redis_url, rate, seconds)
    return WebhooksResult(
        deliveries,
        made.sender_s,
        made.raw_s,
        made.failed_attempts,
        latencies,
        round(rate * seconds),
        rate,
        seconds,
    )


def goal_met(result: WebhooksResult) -> bool:
    return (
        len(result.latencies_s) == result.events
        and result.failed_attempts == 0
        and result.latency_ms(0.99) <= LATENCY_GOAL_MS
    )


def section(result: WebhooksResult) -> model.Section:
    throughput = model.Benchmark(
        name=f"{result.deliveries:,} deliveries to a local receiver, {MERCHANTS} endpoints",
        unit="deliveries/s",
        throughput=result.sender_rate,
        baseline_name=f"aiohttp straight to the receiver, {MERCHANTS * ENDPOINT_CONCURRENCY} at a time",
        baseline=result.raw_rate,
        ratio=result.sender_rate / result.raw_rate,
        extra={"failed attempts": float(result.failed_attempts)},
    )
    latency = model.Benchmark(
        name=f"event → delivered at {result.rate:g} events/s",
        unit="events delivered",
        throughput=float(len(result.latencies_s)),
        p50_ms=result.latency_ms(0.5),
        p99_ms=result.latency_ms(0.99),
        goal=f"p99 ≤ {LATENCY_GOAL_MS:g} ms",
        goal_met=goal_met(result),
    )
    return model.Section(
        name="webhooks",
        description=(
            "pm-webhooks (a real process) delivering to a local receiver process: deliveries made "
            "beforehand, released at once, beside aiohttp posting the same signed bodies; "
            f"then state changes put on pm:events at {result.rate:g}/s for {result.seconds:g} s, "
            "each timed from its publication to its delivery being recorded."
        ),
        benchmarks=[throughput, latency],
        goals_met=goal_met(result),
    )


def table(result: WebhooksResult) -> Table:
    shown = Table(title="Merchant webhooks")
    for column in ("figure", "value", "baseline", "goal"):
        shown.add_column(column)
    shown.add_row(
        f"deliveries, {result.deliveries:,}",
        f"{result.sender_rate:,.0f}/s ({result.failed_attempts} failed attempts)",
        f"aiohttp {result.raw_rate:,.0f}/s ({result.sender_rate / result.raw_rate:.0%})",
        "—",
    )
    shown.add_row(
        f"event → delivered at {result.rate:g}/s",
        f"p50 {result.latency_ms(0.5):.0f} ms, p99 {result.latency_ms(0.99):.0f} ms",
        f"{len(result.latencies_s):,} of {result.events:,} delivered",
        f"p99 ≤ {LATENCY_GOAL_MS:g} ms",
    )
    return shown
