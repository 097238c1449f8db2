"""Real consumer processes killed and stopped mid-batch: nothing is lost, nothing is handled twice as new."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from redis.asyncio import Redis

from pm_shared.streams import Publisher
from pm_shared.streams.connection import as_str
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import log_key, probe

pytestmark = pytest.mark.slow
GROUP = "workers"


class Workers:
    def __init__(self, redis_url: str, stream: str) -> None:
        self.redis_url = redis_url
        self.stream = stream
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *options: str) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pm_tools.testing.worker",
                "--redis-url",
                self.redis_url,
                "--stream",
                self.stream,
                "--group",
                GROUP,
                "--consumer",
                name,
                *options,
            ],
        )
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(redis_url: str, stream_name: str) -> Iterator[Workers]:
    w = Workers(redis_url, stream_name)
    yield w
    w.stop_all()


async def log(redis: Redis, stream: str) -> list[tuple[str, str, str, int]]:
    rows = await redis.lrange(log_key(stream), 0, -1)
    out = []
    for row in rows:
        consumer, message_id, what, attempt = as_str(row).split(" ")
        out.append((consumer, message_id, what, int(attempt)))
    return out


async def count(redis: Redis, stream: str, what: str, consumer: str | None = None) -> int:
    return sum(1 for c, _, w, _ in await log(redis, stream) if w == what and consumer in (None, c))


async def test_sigkill_mid_batch_then_another_consumer_finishes_the_work(
    redis: Redis, stream_name: str, workers: Workers
) -> None:
    await ensure_group(redis, stream_key(stream_name, 0), GROUP)
    messages = [probe(i) for i in range(200)]
    await Publisher(redis).publish_many(stream_name, messages)
    first = workers.start("A", "--delay-ms", "10", "--count", "100", "--lease-ms", "1000")
    await eventually(lambda: _at_least(count(redis, stream_name, "new", "A"), 30), timeout=30)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    done_by_a = await count(redis, stream_name, "new", "A")
    assert done_by_a < 100  # killed inside its first batch, before that batch was acked

    workers.start("B", "--count", "100", "--lease-ms", "1000", "--claim-interval-ms", "100")
    await eventually(lambda: _at_least(count(redis, stream_name, "new"), 200), timeout=30)
    await eventually(lambda: _pending_is(redis, stream_name, 0), timeout=10)

    rows = await log(redis, stream_name)
    new = [m for _, m, w, _ in rows if w == "new"]
    assert sorted(new) == sorted(m.message_id for m in messages)  # every key new exactly once
    redelivered = {m for c, m, w, a in rows if c == "B" and a == 2}
    assert len(redelivered) >= done_by_a  # A's handled-but-unacked entries came back ...
    dups = {m for c, m, w, _ in rows if c == "B" and w == "dup"}
    assert dups == {m for c, m, w, _ in rows if c == "A" and w == "new"}  # ... and were seen as duplicates


async def test_sigterm_during_a_batch_finishes_and_acks_it_then_exits_0(
    redis: Redis, stream_name: str, workers: Workers
) -> None:
    await ensure_group(redis, stream_key(stream_name, 0), GROUP)
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(10)])
    proc = workers.start("T", "--delay-ms", "100", "--count", "10")
    await eventually(lambda: _at_least(count(redis, stream_name, "start"), 1), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 20) == 0
    assert await count(redis, stream_name, "new") == 10
    assert await _pending_is(redis, stream_name, 0)
    assert (await log(redis, stream_name))[-1][2] == "stopped"


async def test_restarted_consumer_re_reads_its_own_pending_entries_before_new_ones(
    redis: Redis, stream_name: str, workers: Workers
) -> None:
    await ensure_group(redis, stream_key(stream_name, 0), GROUP)
    publisher = Publisher(redis)
    old = [probe(i) for i in range(5)]
    await publisher.publish_many(stream_name, old)
    proc = workers.start("R", "--delay-ms", "300", "--count", "5")
    await eventually(lambda: _at_least(count(redis, stream_name, "start"), 1), timeout=20)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    fresh = [probe(i) for i in range(5, 10)]
    await publisher.publish_many(stream_name, fresh)

    workers.start("R", "--count", "100")  # same name: a restart, not a new consumer
    await eventually(lambda: _at_least(count(redis, stream_name, "new"), 10), timeout=20)
    rows = await log(redis, stream_name)
    restart = max(i for i, row in enumerate(rows) if row[2] == "started")
    handled = [m for _, m, w, _ in rows[restart:] if w in ("new", "dup")]
    assert handled[:5] == [m.message_id for m in old]
    assert handled[5:] == [m.message_id for m in fresh]


async def _at_least(value: object, n: int) -> bool:
    assert asyncio.iscoroutine(value)
    return int(await value) >= n


async def _pending_is(redis: Redis, stream: str, n: int) -> bool:
    return int((await redis.xpending(stream_key(stream, 0), GROUP))["pending"]) == n
