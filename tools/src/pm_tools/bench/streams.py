"""Benchmarks of the streams runtime beside raw redis-py doing the same work, measured in the same run.

Consumer: the runtime with a no-op handler against a hand-written loop of batched XREADGROUP and
one multi-id XACK per batch (and, as a stricter baseline, the same loop sending each XACK in one
round trip with the next read, as the runtime does). Publisher: `Publisher.publish` (back-pressure
check on) against a bare awaited XADD, and `publish_many` against a raw pipeline of XADDs. Figures
are messages per second, best of `repeat` runs of each side taken in turns, with the fleet's
garbage-collector settings (`runtime.tune_gc`); the ratio is runtime / raw (goal ≥ 70 %).
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.asyncio import Redis
from rich.console import Console
from rich.table import Table

from pm_shared.runtime import tune_gc
from pm_shared.streams import Consumer, Delivery, Publisher
from pm_shared.streams.connection import connect
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group
from pm_shared.streams.publisher import PAYLOAD_FIELD, encode
from pm_tools.bench import model, tables
from pm_tools.testing.worker import Probe, probe

GOAL = 0.70
GROUP = "bench"
ROUND = 4_000  # publishes between drains: below the back-pressure threshold of MAXLEN 10000


@dataclass(frozen=True)
class Result:
    name: str
    runtime: float
    raw: float

    @property
    def ratio(self) -> float:
        return self.runtime / self.raw


class Bench:
    def __init__(self, url: str, messages: int, repeat: int) -> None:
        self.url = url
        self.messages = messages
        self.repeat = repeat
        self.redis = connect(url, name="bench")
        self.reader = connect(url, blocking_reads=True, name="bench-reader")
        self.probes = [probe(i) for i in range(messages)]

    async def close(self) -> None:
        await self.redis.aclose()
        await self.reader.aclose()

    async def fresh_stream(self, fill: int = 0) -> str:
        name = f"bench:{uuid.uuid4().hex[:8]}"
        key = stream_key(name, 0)
        await ensure_group(self.redis, key, GROUP)
        payload = encode(self.probes[0])
        for start in range(0, fill, 1000):
            async with self.redis.pipeline(transaction=False) as pipe:
                for _ in range(min(1000, fill - start)):
                    pipe.xadd(key, {PAYLOAD_FIELD: payload})
                await pipe.execute()
        return name

    async def drop(self, name: str) -> None:
        keys = [k async for k in self.redis.scan_iter(match=f"{{{name}:*")]
        if keys:
            await self.redis.delete(*keys)

    # -- consumer --------------------------------------------------------------------------------

    async def raw_consume(self, piggyback: bool = False) -> float:
        name = await self.fresh_stream(self.messages)
        key = stream_key(name, 0)
        started = time.perf_counter()
        left = self.messages
        ids: list[Any] = []
        while left:
            if piggyback and ids:
                # The XACK of one batch travels in the same round trip as the next read.
                async with self.reader.pipeline(transaction=False) as pipe:
                    pipe.xack(key, GROUP, *ids)
                    pipe.xreadgroup(GROUP, "raw", {key: ">"}, count=100, block=2000)
                    _, reply = await pipe.execute()
            else:
                reply = await self.reader.xreadgroup(GROUP, "raw", {key: ">"}, count=100, block=2000)
            ids = [entry_id for _, batch in reply for entry_id, _ in batch]
            if not piggyback:
                await self.redis.xack(key, GROUP, *ids)
            left -= len(ids)
        if piggyback:
            await self.redis.xack(key, GROUP, *ids)
        rate = self.messages / (time.perf_counter() - started)
        await self.drop(name)
        return rate

    async def runtime_consume(self, per_message: bool) -> float:
        name = await self.fresh_stream(self.messages)
        seen = 0
        finished = asyncio.Event()

        async def on_batch(batch: Sequence[Delivery[Probe]]) -> None:
            nonlocal seen
            seen += len(batch)
            if seen >= self.messages:
                finished.set()

        async def on_message(delivery: Delivery[Probe]) -> None:
            nonlocal seen
            seen += 1
            if seen >= self.messages:
                finished.set()

        consumer = Consumer(
            redis=self.redis,
            reader=self.reader,
            stream=name,
            group=GROUP,
            consumer="runtime",
            decoder=msgspec.json.Decoder(Probe),
            handle=on_message if per_message else None,
            handle_batch=None if per_message else on_batch,
            count=100,
            claim_interval_ms=60_000,
        )
        stop = asyncio.Event()
        started = time.perf_counter()
        task = asyncio.create_task(consumer.run(stop))
        await finished.wait()
        elapsed = time.perf_counter() - started
        stop.set()
        await task
        await self.drop(name)
        return self.messages / elapsed

    # -- publisher -------------------------------------------------------------------------------

    async def publish_rounds(self, send: Callable[[str, list[Probe]], Awaitable[None]]) -> float:
        name = await self.fresh_stream()
        key = stream_key(name, 0)
        elapsed = 0.0
        for start in range(0, self.messages, ROUND):
            chunk = self.probes[start : start + ROUND]
            began = time.perf_counter()
            await send(name, chunk)
            elapsed += time.perf_counter() - began
            # Untimed: the group "consumes" everything, so back-pressure never refuses.
            await self.redis.xgroup_setid(key, GROUP, "$")
        await self.drop(name)
        return self.messages / elapsed

    async def raw_xadd(self, name: str, chunk: list[Probe]) -> None:
        key = stream_key(name, 0)
        for message in chunk:
            await self.redis.xadd(key, {PAYLOAD_FIELD: encode(message)}, maxlen=10_000, approximate=True)

    async def raw_pipeline(self, name: str, chunk: list[Probe]) -> None:
        key = stream_key(name, 0)
        for start in range(0, len(chunk), 100):
            async with self.redis.pipeline(transaction=False) as pipe:
                for message in chunk[start : start + 100]:
                    pipe.xadd(key, {PAYLOAD_FIELD: encode(message)}, maxlen=10_000, approximate=True)
                await pipe.execute()

    def publisher(self) -> Publisher:
        return Publisher(self.redis, maxlen=10_000)

    async def runtime_publish(self, name: str, chunk: list[Probe]) -> None:
        publisher = self._publisher
        for message in chunk:
            await publisher.publish(name, message)

    async def runtime_publish_many(self, name: str, chunk: list[Probe]) -> None:
        publisher = self._publisher
        for start in range(0, len(chunk), 100):
            await publisher.publish_many(name, chunk[start : start + 100])

    async def pair(
        self, name: str, runtime: Callable[[], Awaitable[float]], raw: Callable[[], Awaitable[float]]
    ) -> Result:
        """Best of `repeat` runs of each side, alternated (runtime, raw, runtime, …): a slow patch of a
        shared machine then weighs on both sides alike, where back-to-back series put it on one."""
        runtimes, raws = [], []
        for _ in range(self.repeat):
            runtimes.append(await runtime())
            raws.append(await raw())
        return Result(name, max(runtimes), max(raws))

    async def run(self) -> list[Result]:
        self._publisher = self.publisher()
        return [
            await self.pair(
                "consumer, batch handler (msg/s)", lambda: self.runtime_consume(False), self.raw_consume
            ),
            await self.pair(
                "consumer, per-message handler (msg/s)", lambda: self.runtime_consume(True), self.raw_consume
            ),
            await self.pair(
                "consumer, batch handler vs raw with the ack in the next read's round trip",
                lambda: self.runtime_consume(False),
                lambda: self.raw_consume(piggyback=True),
            ),
            await self.pair(
                "publisher, one XADD per message (msg/s)",
                lambda: self.publish_rounds(self.runtime_publish),
                lambda: self.publish_rounds(self.raw_xadd),
            ),
            await self.pair(
                "publisher, batches of 100 (publish_many: one script call) vs a raw pipeline (msg/s)",
                lambda: self.publish_rounds(self.runtime_publish_many),
                lambda: self.publish_rounds(self.raw_pipeline),
            ),
        ]


async def server_version(redis: Redis) -> str:
    info = await redis.info("server")
    return str(info["redis_version"])


def table(results: Sequence[Result], messages: int, repeat: int, version: str) -> Table:
    """Each runtime figure beside its raw redis-py loop, against the goal."""
    header = (
        f"{messages:,} messages, best of {repeat}; Redis {version}; "
        f"Python {platform.python_version()}; {platform.machine()}"
    )
    figures = ["runtime", "raw redis-py", "ratio"]
    out = tables.table(
        f"PM streams runtime vs raw redis-py ({header})",
        ["benchmark", *figures, f"goal ≥ {GOAL:.0%}"],
        right=figures,
    )
    for r in results:
        out.add_row(
            r.name, f"{r.runtime:,.0f}", f"{r.raw:,.0f}", f"{r.ratio:.0%}", tables.verdict(r.ratio >= GOAL)
        )
    return out


def ratios(results: Sequence[Result]) -> str:
    """`ratios: 0.91, 0.88, … | median 0.90`."""
    listed = ", ".join(f"{r.ratio:.2f}" for r in results)
    return f"ratios: {listed} | median {statistics.median(r.ratio for r in results):.2f}"


LABELS = (
    ("consumer, no-op batch handler", "batched XREADGROUP + one multi-id XACK"),
    ("consumer, no-op per-message handler (bounded concurrency)", "batched XREADGROUP + one multi-id XACK"),
    (
        "consumer, no-op batch handler, vs raw with the XACK in the next read's round trip",
        "batched XREADGROUP, each XACK in the next read's round trip",
    ),
    ("publisher, one awaited XADD per message, back-pressure check on", "one awaited XADD per message"),
    (
        "publisher, batches of 100 (publish_many, one script call per partition)",
        "a pipeline of 100 XADDs",
    ),
)
"""(name, raw redis-py baseline) of each of `Bench.run`'s results, in order."""


async def run(url: str, messages: int, repeat: int) -> tuple[list[Result], str]:
    """Every figure of `Bench.run`, and the Redis server's version."""
    tune_gc()  # the fleet's collector settings, as the services run them (both sides alike)
    bench = Bench(url, messages, repeat)
    try:
        version = await server_version(bench.redis)
        results = await bench.run()
    finally:
        await bench.close()
    return results, version


def print_report(results: list[Result], messages: int, repeat: int, version: str, console: Console) -> bool:
    """The table and the ratios line on `console`; True when every ratio met the goal."""
    console.print(table(results, messages, repeat, version))
    console.print(ratios(results), markup=False)
    return all(r.ratio >= GOAL for r in results)


def section(results: list[Result], messages: int, repeat: int) -> model.Section:
    """The figures for `pm bench`'s report: each runtime figure beside its raw redis-py loop."""
    labels: Sequence[tuple[str, str]] = (
        LABELS if len(LABELS) == len(results) else [(r.name, "") for r in results]
    )
    benchmarks = [
        model.Benchmark(
            name=name,
            unit="msg/s",
            throughput=r.runtime,
            baseline_name=f"raw redis-py: {baseline}" if baseline else "raw redis-py",
            baseline=r.raw,
            ratio=r.ratio,
            goal=f"≥ {GOAL:.0%} of raw",
            goal_met=r.ratio >= GOAL,
        )
        for r, (name, baseline) in zip(results, labels, strict=True)
    ]
    return model.Section(
        name="streams runtime",
        description=(
            f"The streams runtime (consumer with a no-op handler, publisher) beside raw redis-py doing "
            f"the same work; {messages:,} messages per run, best of {repeat}."
        ),
        benchmarks=benchmarks,
        goals_met=all(b.goal_met for b in benchmarks),
    )


async def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pm-bench", description=__doc__)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--messages", type=int, default=40_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    results, version = await run(args.redis_url, args.messages, args.repeat)
    print_report(results, args.messages, args.repeat, version, Console())
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
