"""What becomes of a failed entry, through a real consumer on a real redis-server: each kind of error
(`pm_shared.errors`), outages waited out in place, retries, the DLQ and a replay."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import msgspec
import pytest
import typer
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from typer.testing import CliRunner

from pm_shared.errors import (
    BackPressureError,
    NotImplementedYet,
    Outage,
    PermanentError,
    RetryLater,
    StreamMissingError,
)
from pm_shared.streams import Consumer, Delivery, Publisher, names
from pm_shared.streams import dlq as dlq_ops
from pm_shared.streams.names import dlq_key
from pm_tools.cli import dlq_cmd
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import Probe, probe

GROUP = "svc"  # the group of the `make_consumer` fixture's consumers (see conftest.py)

MakeConsumer = Callable[..., Consumer[Probe]]
RunUntil = Callable[..., Awaitable[None]]
Pending = Callable[[], Awaitable[int]]


async def test_failing_handler_is_delivered_three_times_then_dead_lettered_then_replayed(
    redis: Redis,
    redis_url: str,
    stream_name: str,
    key: str,
    monkeypatch: pytest.MonkeyPatch,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    message = probe(7)
    await Publisher(redis).publish(stream_name, message)
    attempts: list[int] = []
    fixed = False

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        if not fixed:
            raise RuntimeError("ledger says no")

    consumer = make_consumer(handle=handle, retry_delay_ms=100)
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    await asyncio.sleep(0.3)  # nothing more may happen to it
    assert attempts == [1, 2, 3]
    assert await pending() == 0
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "max_deliveries"
    assert letter.fields["attempts"] == "3"
    assert letter.fields["error"] == "RuntimeError: ledger says no"
    assert letter.fields["original_stream"] == key
    assert letter.fields["group"] == GROUP
    assert letter.fields["first_failure_at"] < letter.fields["last_failure_at"]
    assert msgspec.json.decode(letter.payload or b"", type=Probe) == message

    fixed = True
    # The operator's way back: `pm dlq replay` (the test stream is made the only one it knows).
    monkeypatch.setattr(names, "ALL_STREAMS", (names.StreamSpec(stream_name, (GROUP,), "test"),))
    app = typer.Typer()
    app.add_typer(dlq_cmd.app, name="dlq")
    args = ["dlq", "replay", "--stream", stream_name, "--id", letter.id, "--yes"]
    result = await asyncio.to_thread(CliRunner().invoke, app, args, env={"PM_REDIS_URL": redis_url})
    assert result.exit_code == 0, result.output
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0
    seen: list[Probe] = []

    async def record(delivery: Delivery[Probe]) -> None:
        seen.append(delivery.message)

    await run_until(make_consumer(handle=record), lambda: _true(len(seen) == 1))
    assert seen[0].message_id == message.message_id  # the idempotency key survived the round trip
    assert await pending() == 0


async def test_undecodable_entry_goes_to_the_dlq_at_once(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await redis.xadd(key, {b"m": b'{"kind": "test.probe", "seq": "not a number"}'})
    await redis.xadd(key, {b"x": b"no payload field"})
    await Publisher(redis).publish(stream_name, probe(1))
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append(delivery.message.seq)

    await run_until(
        make_consumer(handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 2),
    )
    letters = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert [(e.reason, e.fields["attempts"]) for e in letters] == [("decode_error", "1")] * 2
    assert handled == [1]
    assert await pending() == 0


async def test_permanent_error_skips_the_retries(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise NotImplementedYet("later")

    await run_until(
        make_consumer(handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert (calls, letter.reason) == (1, "unhandled")


async def test_one_failure_does_not_fail_its_batch_mates(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(10)])
    ok: set[int] = set()

    async def handle(delivery: Delivery[Probe]) -> None:
        if delivery.message.seq == 4:
            raise ValueError("poison")
        ok.add(delivery.message.seq)

    await run_until(
        make_consumer(handle=handle, retry_delay_ms=50),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    assert ok == set(range(10)) - {4}
    assert await pending() == 0


@pytest.mark.parametrize(
    "outage",
    [
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        RedisConnectionError("Connection closed by server."),
        Outage("the ledger database is restarting"),
    ],
    ids=type,
)
async def test_an_outage_is_waited_out_in_place_without_counting_a_delivery(
    redis: Redis,
    stream_name: str,
    key: str,
    outage: Exception,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    # With one delivery allowed, a failure counted as a delivery would dead-letter the entry at once.
    await Publisher(redis).publish(stream_name, probe(1))
    attempts: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        if len(attempts) <= 3:
            raise outage

    before = _transient_count(key)
    await run_until(
        make_consumer(handle=handle, max_deliveries=1),
        lambda: _true(len(attempts) == 4),
    )
    assert attempts == [1, 1, 1, 1]
    await eventually(lambda: _later(pending(), 0))
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0
    assert _transient_count(key) == before + 3


async def test_a_batch_handler_is_called_again_with_only_the_entries_that_met_the_outage(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish_many(stream_name, [probe(i) for i in range(4)])
    calls: list[list[int]] = []

    async def handle_batch(batch: Sequence[Delivery[Probe]]) -> dict[str, BaseException]:
        calls.append([d.message.seq for d in batch])
        if len(calls) > 1:
            return {}
        return {d.entry_id: ConnectionResetError(104, "reset") for d in batch if d.message.seq % 2}

    await run_until(
        make_consumer(handle_batch=handle_batch, max_deliveries=1),
        lambda: _true(len(calls) == 2),
    )
    assert calls == [[0, 1, 2, 3], [1, 3]]
    await eventually(lambda: _later(pending(), 0))
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0


async def test_an_outage_longer_than_the_in_place_window_counts_as_a_delivery(
    redis: Redis, reader: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise asyncpg.CannotConnectNowError("the database system is shutting down")

    consumer = make_consumer(handle=handle, max_deliveries=1, transient_retry_s=0.5)
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "max_deliveries"
    assert letter.fields["error"].startswith("CannotConnectNowError")
    assert calls == 2  # pauses of 0.2 s then 0.4 s: the second would end past the 0.5 s window


async def test_with_no_in_place_window_a_failed_outage_counts_at_once(
    redis: Redis, stream_name: str, key: str, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    # What the ledger-writer's consumer is given: its handler waits outages out itself.
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise RedisConnectionError("the writer lease is not held")

    consumer = make_consumer(handle=handle, max_deliveries=1, transient_retry_s=0)
    await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    assert calls == 1


class Mismatch(PermanentError):
    reason = "psp_mismatch"


@pytest.mark.parametrize(
    ("error", "reason"),
    [(PermanentError("never"), "unrecoverable"), (Mismatch("another amount"), "psp_mismatch")],
    ids=["PermanentError", "its-subclass"],
)
async def test_a_permanent_error_is_dead_lettered_at_once_with_its_reason(
    redis: Redis,
    stream_name: str,
    key: str,
    error: PermanentError,
    reason: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    calls = 0

    async def handle(delivery: Delivery[Probe]) -> None:
        nonlocal calls
        calls += 1
        raise error

    await run_until(
        make_consumer(handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert (calls, letter.reason, letter.fields["attempts"]) == (1, reason, "1")
    assert await pending() == 0


@pytest.mark.parametrize(
    ("error", "traceback"),
    [
        (RuntimeError("a bug"), True),
        (RetryLater("the PSP did not answer"), False),
        (StreamMissingError("{pm:elsewhere:0}"), False),
    ],
    ids=["bug", "RetryLater", "StreamMissingError"],
)
async def test_a_retryable_failure_counts_each_delivery_and_only_a_bug_is_logged_with_its_traceback(
    redis: Redis,
    stream_name: str,
    key: str,
    error: Exception,
    traceback: bool,
    caplog: pytest.LogCaptureFixture,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    attempts: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        raise error

    consumer = make_consumer(handle=handle, retry_delay_ms=100)
    with caplog.at_level(logging.WARNING, logger="pm_shared.streams"):
        await run_until(consumer, lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1))
    assert attempts == [1, 2, 3]
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "max_deliveries"
    assert letter.fields["error"] == f"{type(error).__name__}: {error}"
    failures = [r for r in caplog.records if r.name == "pm_shared.streams.failures"]
    assert [r.levelname for r in failures] == ["WARNING", "WARNING", "ERROR"]
    assert all((r.exc_info is not None) is traceback for r in failures)


@pytest.mark.parametrize(
    ("error", "soon"),
    [
        (RetryLater("busy", retry_after_s=0.1), True),
        (BackPressureError("{pm:next:0}", 10, 5, 0.1), True),
        (RetryLater("busy"), False),
    ],
    ids=["retry_after_s", "BackPressureError", "no-retry_after_s"],
)
async def test_retry_later_is_delivered_again_after_the_delay_it_asks_for(
    redis: Redis,
    stream_name: str,
    key: str,
    error: RetryLater,
    soon: bool,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    # The consumer's own retry delay is 0.9 s (see make_consumer); the error asks for 0.1 s.
    await Publisher(redis).publish(stream_name, probe(1))
    seen: list[float] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        seen.append(time.monotonic())
        if len(seen) == 1:
            raise error

    await run_until(make_consumer(handle=handle), lambda: _true(len(seen) == 2))
    gap = seen[1] - seen[0]
    assert gap < 0.6 if soon else gap >= 0.85, gap
    await eventually(lambda: _later(pending(), 0))
    assert await redis.xlen(dlq_key(stream_name, 0)) == 0


async def test_entry_whose_consumer_died_on_its_last_delivery_is_dead_lettered_unhandled(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    await Publisher(redis).publish(stream_name, probe(1))
    for _ in range(3):  # three consumers took it and died
        await redis.xautoclaim(key, GROUP, "dead", 0, "0-0") if await pending() else None
        await redis.xreadgroup(GROUP, "dead", {key: ">"}, count=1)
    rows = await redis.xpending_range(key, GROUP, "-", "+", 10)
    assert rows[0]["times_delivered"] == 3
    handled: list[int] = []

    async def handle(delivery: Delivery[Probe]) -> None:
        handled.append(delivery.message.seq)

    await run_until(
        make_consumer(handle=handle, lease_ms=200),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert handled == []
    assert letter.reason == "max_deliveries"
    assert "without an ack" in letter.fields["error"]


async def test_deleted_payload_is_dead_lettered_as_such(
    redis: Redis,
    stream_name: str,
    key: str,
    make_consumer: MakeConsumer,
    run_until: RunUntil,
    pending: Pending,
) -> None:
    entry_id = await Publisher(redis).publish(stream_name, probe(1))
    await redis.xreadgroup(GROUP, "c1", {key: ">"}, count=1)
    await redis.xdel(key, entry_id)

    async def handle(delivery: Delivery[Probe]) -> None:
        raise AssertionError("nothing to handle")

    await run_until(
        make_consumer(handle=handle),
        lambda: _later(redis.xlen(dlq_key(stream_name, 0)), 1),
    )
    (letter,) = await dlq_ops.entries(redis, [dlq_key(stream_name, 0)])
    assert letter.reason == "payload_deleted"
    assert await pending() == 0


def _transient_count(key: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "pm_stream_messages_total", {"stream": key, "group": GROUP, "outcome": "transient"}
        )
        or 0.0
    )


async def _true(value: bool) -> bool:
    return value


async def _later(value: Awaitable[int], expected: int) -> bool:
    return await value == expected
