"""The ledger-writer as real processes: an active writer, a standby taking over, a crash before the ack.

Each writer runs as `pm_tools.processes` starts it, on the test Redis database and the session's
migrated PostgreSQL database, with a 1.5 s lease under a lease key of the test's own. The writers
use the real stream names, so every test first deletes the `{pm:ledger:*` keys of that database.
Accounts get fresh ids (`tb.id()`); balances are read through a read-only ledger. Every process
is killed in the fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_shared.fleet import LEDGER_WRITER
from pm_shared.ledger.embedded import EmbeddedLedger
from pm_shared.messages import LedgerAccount, LedgerCommand, LedgerResult, LedgerTransfer, new_message_id, now
from pm_shared.streams import Publisher
from pm_shared.streams.names import GROUP_LEDGER_WRITER, LEDGER_COMMANDS, LEDGER_RESULTS, stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD, encode
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import sample_value

pytestmark = pytest.mark.slow

LEASE_MS = 1_500
THB = 764
COMMANDS_KEY = stream_key(LEDGER_COMMANDS.name, 0)
RESULTS_KEY = stream_key(LEDGER_RESULTS.name, 0)
_results = msgspec.json.Decoder(LedgerResult)


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class Writer:
    popen: subprocess.Popen[bytes]
    port: int
    consumer: str
    stderr_path: Path

    async def status(self, path: str) -> int | None:
        return await asyncio.to_thread(_status, processes.base_url(self.port) + path)

    async def active_gauge(self) -> float | None:
        """`pm_ledger_writer_active` as this writer's /metrics reports it."""

        def read() -> str:
            with urllib.request.urlopen(processes.base_url(self.port) + "/metrics", timeout=5) as answer:
                return str(answer.read().decode())

        return sample_value(await asyncio.to_thread(read), "pm_ledger_writer_active")

    def records(self) -> list[dict[str, Any]]:
        lines = self.stderr_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.strip().startswith("{")]

    def logged(self, fragment: str) -> bool:
        return any(fragment in r.get("msg", "") for r in self.records())

    def tail(self) -> str:
        return "\n".join(self.stderr_path.read_text(errors="replace").splitlines()[-20:])

    async def wait_ready(self, timeout: float = 20.0) -> None:
        async def ready() -> bool:
            assert self.popen.poll() is None, f"the writer exited:\n{self.tail()}"
            return await self.status("/readyz") == 200

        await eventually(ready, timeout=timeout, interval=0.05, what=f"writer ready:\n{self.tail()}")


@dataclass
class Writers:
    redis_url: str
    database_url: str
    workdir: Path
    lease_key: str = field(default_factory=lambda: f"test:ledger-writer:lease:{uuid.uuid4().hex[:8]}")
    started: list[Writer] = field(default_factory=list)

    def start(self, consumer: str | None = None) -> Writer:
        port = processes.free_port()
        consumer = consumer or f"lw-test-{uuid.uuid4().hex[:8]}"
        variables = {
            "PM_REDIS_URL": self.redis_url,
            "PM_DATABASE_URL": self.database_url,
            "PM_CONSUMER_NAME": consumer,
            "PM_LOG_FORMAT": "json",
            "PM_STREAM_BLOCK_MS": "200",
            "PM_LEDGER_WRITER_LEASE_MS": str(LEASE_MS),
            "PM_LEDGER_WRITER_LEASE_KEY": self.lease_key,
        }
        env = processes.environment(LEDGER_WRITER, variables, port=port)
        stderr_path = self.workdir / f"writer-{len(self.started)}.stderr"
        with stderr_path.open("wb") as err:
            popen = processes.spawn(LEDGER_WRITER, env, stderr=err)
        writer = Writer(popen, port, consumer, stderr_path)
        self.started.append(writer)
        return writer

    def kill_all(self) -> None:
        for writer in self.started:
            if writer.popen.poll() is None:
                writer.popen.kill()
        for writer in self.started:
            try:
                writer.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass


async def delete_ledger_streams(redis: Redis) -> None:
    keys = [k async for k in redis.scan_iter(match="{pm:ledger:*")]
    if keys:
        await redis.delete(*keys)


@pytest.fixture
async def writers(redis_url: str, redis: Redis, database_url: str, tmp_path: Path) -> AsyncIterator[Writers]:
    await delete_ledger_streams(redis)
    group = Writers(redis_url, database_url, tmp_path)
    try:
        yield group
    finally:
        group.kill_all()
        await redis.delete(group.lease_key)
        await delete_ledger_streams(redis)


@pytest.fixture
async def ledger(database_url: str) -> AsyncIterator[EmbeddedLedger]:
    """For reading balances only: the writers are the ledger's only writers."""
    reader = await EmbeddedLedger.open(database_url, readonly=True)
    try:
        yield reader
    finally:
        await reader.close()


def command(
    *, accounts: list[LedgerAccount] | None = None, transfers: list[LedgerTransfer] | None = None
) -> LedgerCommand:
    return LedgerCommand(
        intent_id=f"int_{tb.id():032x}",
        message_id=new_message_id(),
        produced_at=now(),
        step="authorize",
        accounts=accounts or [],
        transfers=transfers or [],
    )


def transfer(debit: int, credit: int, amount: int) -> LedgerTransfer:
    return LedgerTransfer(
        id=tb.id(), debit_account_id=debit, credit_account_id=credit, amount=amount, ledger=THB, code=1
    )


async def results_for(redis: Redis, command_id: str, count: int = 1) -> list[LedgerResult]:
    async def arrived() -> bool:
        return len(await _matching(redis, command_id)) >= count

    await eventually(arrived, timeout=20, what=f"{count} result(s) for command {command_id}")
    return await _matching(redis, command_id)


async def _matching(redis: Redis, command_id: str) -> list[LedgerResult]:
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await redis.xrange(RESULTS_KEY)  # type: ignore[assignment]
    results = [_results.decode(fields[PAYLOAD_FIELD]) for _, fields in entries]
    return [r for r in results if r.command_id == command_id]


async def open_accounts(redis: Redis) -> tuple[int, int, int]:
    """Through the running writer: an operator equity account and two wallets."""
    equity, alice, bob = (LedgerAccount(id=tb.id(), ledger=THB, code=code) for code in (90, 1, 1))
    opening = command(accounts=[equity, alice, bob])
    await Publisher(redis).publish(LEDGER_COMMANDS, opening)
    (opened,) = await results_for(redis, opening.message_id)
    assert opened.ok, opened
    return equity.id, alice.id, bob.id


async def balances(ledger: EmbeddedLedger, *ids: int) -> dict[int, tuple[int, int]]:
    return {a.id: (a.debits_posted, a.credits_posted) for a in await ledger.lookup_accounts(list(ids))}


async def test_a_standby_waits_and_takes_over_within_the_lease_when_the_active_writer_is_killed(
    writers: Writers, redis: Redis, ledger: EmbeddedLedger
) -> None:
    active = writers.start()
    await active.wait_ready()
    standby = writers.start()

    async def standing_by() -> bool:
        return standby.logged("standby") and await standby.status("/healthz") == 200

    await eventually(standing_by, timeout=20, what=f"the second writer standing by:\n{standby.tail()}")
    assert await standby.status("/readyz") == 503
    assert await active.status("/readyz") == 200
    # What the alert "no ledger-writer holds the lease" reads: one writer reports 1, the standby 0.
    assert (await active.active_gauge(), await standby.active_gauge()) == (1.0, 0.0)
    assert active.logged("acquired")
    assert not standby.logged("acquired")
    # Only the active writer reads the commands stream.
    consumers = {c["name"].decode() for c in await redis.xinfo_consumers(COMMANDS_KEY, GROUP_LEDGER_WRITER)}
    assert active.consumer in consumers and standby.consumer not in consumers

    equity, alice, _ = await open_accounts(redis)

    active.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert await asyncio.to_thread(active.popen.wait, 10) == -signal.SIGKILL
    fund = command(transfers=[transfer(equity, alice, 2_500)])
    await Publisher(redis).publish(LEDGER_COMMANDS, fund)

    await standby.wait_ready(timeout=LEASE_MS / 1000 + 5)
    took_over = time.monotonic() - killed
    assert await standby.active_gauge() == 1.0
    # The lease expires at most LEASE_MS after the kill; add a standby poll and the consumer's start.
    assert took_over < LEASE_MS / 1000 + 1.0, took_over
    assert standby.logged("acquired")

    (funded,) = await results_for(redis, fund.message_id)
    assert funded.ok and [e.status for e in funded.transfers] == ["CREATED"]
    assert (await balances(ledger, alice))[alice] == (0, 2_500)
    assert not [r for r in standby.records() if r["level"] in ("ERROR", "CRITICAL")], standby.tail()


async def test_a_graceful_stop_hands_the_lease_over_at_once(writers: Writers, redis: Redis) -> None:
    active = writers.start()
    await active.wait_ready()
    standby = writers.start()

    async def standing_by() -> bool:
        return standby.logged("standby")

    await eventually(standing_by, timeout=20, what=f"the second writer standing by:\n{standby.tail()}")

    active.popen.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    assert await asyncio.to_thread(active.popen.wait, 15) == 0, active.tail()
    assert active.logged("released")
    await standby.wait_ready(timeout=10)
    assert time.monotonic() - stopped < LEASE_MS / 1000, "a released lease needs no expiry"


async def test_a_writer_killed_after_the_ledger_answered_but_before_the_ack_repeats_the_same_outcome(
    writers: Writers, redis: Redis, ledger: EmbeddedLedger
) -> None:
    first = writers.start()
    await first.wait_ready()
    equity, alice, bob = await open_accounts(redis)
    fund = command(transfers=[transfer(equity, alice, 1_000)])
    pay = command(transfers=[transfer(alice, bob, 300)])
    publisher = Publisher(redis)
    await publisher.publish(LEDGER_COMMANDS, fund)
    await results_for(redis, fund.message_id)
    await publisher.publish(LEDGER_COMMANDS, pay)
    (answered,) = await results_for(redis, pay.message_id)  # the ledger answered, the result is out
    assert answered.ok and [e.status for e in answered.transfers] == ["CREATED"]

    first.popen.send_signal(signal.SIGKILL)
    assert await asyncio.to_thread(first.popen.wait, 10) == -signal.SIGKILL
    # Recreate the moment before the ack: the same command sits read but unacked in the pending
    # list of the killed writer's consumer (an XREADGROUP whose batch was never acked).
    await redis.xadd(COMMANDS_KEY, {PAYLOAD_FIELD: encode(pay)})
    delivered = await redis.xreadgroup(GROUP_LEDGER_WRITER, first.consumer, {COMMANDS_KEY: ">"}, count=10)
    assert delivered
    pending = await redis.xpending(COMMANDS_KEY, GROUP_LEDGER_WRITER)
    assert int(pending["pending"]) == 1

    # Restarted under the same consumer name (a pod keeps its name), it re-reads its own pending
    # entries first: after the killed writer's lease expires.
    second = writers.start(consumer=first.consumer)
    await second.wait_ready(timeout=LEASE_MS / 1000 + 10)
    retried = await results_for(redis, pay.message_id, count=2)
    assert len(retried) == 2
    again = retried[1]
    assert again.ok and [e.status for e in again.transfers] == ["EXISTS"]
    assert again.message_id == answered.message_id
    assert [e.id for e in again.transfers] == [e.id for e in answered.transfers]
    assert [e.timestamp for e in again.transfers] == [e.timestamp for e in answered.transfers]

    async def acked() -> bool:
        return int((await redis.xpending(COMMANDS_KEY, GROUP_LEDGER_WRITER))["pending"]) == 0

    await eventually(acked, timeout=10, what="the retried command acked")
    # Applied once: 1000 in, 300 out of alice; 300 into bob.
    assert await balances(ledger, alice, bob) == {alice: (300, 1_000), bob: (0, 300)}


async def test_a_writer_that_loses_its_lease_stops_writing_and_stands_by(
    writers: Writers, redis: Redis, ledger: EmbeddedLedger
) -> None:
    active = writers.start()
    await active.wait_ready()
    equity, alice, _ = await open_accounts(redis)

    # Another process holds the lease now (as after a stall longer than the lease).
    await redis.set(writers.lease_key, "usurper", px=60_000)

    async def stood_down() -> bool:
        return active.logged("taken over") and await active.status("/readyz") == 503

    await eventually(
        stood_down, timeout=LEASE_MS / 1000 + 5, what=f"the writer standing down:\n{active.tail()}"
    )
    assert active.popen.poll() is None  # still running, as a standby
    fund = command(transfers=[transfer(equity, alice, 70)])
    await Publisher(redis).publish(LEDGER_COMMANDS, fund)
    await asyncio.sleep(1.0)
    assert await _matching(redis, fund.message_id) == [], "a writer without the lease must not write"
    assert (await balances(ledger, alice))[alice] == (0, 0)

    # The usurper goes away: the writer takes the lease back and handles what waited.
    await redis.delete(writers.lease_key)
    await active.wait_ready(timeout=10)
    (funded,) = await results_for(redis, fund.message_id)
    assert funded.ok
    assert (await balances(ledger, alice))[alice] == (0, 70)
