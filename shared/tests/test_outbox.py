"""The outbox: rows commit with the caller's transaction, are published after it, the relay sends the rest."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import asyncpg
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared.db import Pool, create_pool, migrate
from pm_shared.errors import BackPressureError
from pm_shared.outbox import Outgoing, Relay, enqueue, publish_committed
from pm_shared.outbox.relay import worth_another_pass
from pm_shared.streams import Publisher, StreamSpec, provision
from pm_shared.streams.connection import connect
from pm_shared.streams.names import stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD, encode
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import probe

GROUP = "downstream"


@pytest_asyncio.fixture
async def pool(empty_database_url: str) -> AsyncIterator[Pool]:
    """A pool on a database of this test's own: a relay claims every unpublished row it can see, so
    rows other tests leave in the session database (the gateway's) must not be in its way."""
    await migrate(empty_database_url)
    pool = await create_pool(empty_database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def stream(redis: Redis, stream_name: str) -> str:
    """A provisioned logical stream of two partitions; `stream_name` deletes its keys afterwards."""
    await provision(redis, 2, [StreamSpec(stream_name, (GROUP,), "outbox test")])
    return stream_name


def outgoing(stream: str, count: int, *, intents: int = 3, start: int = 0) -> list[Outgoing]:
    return [
        Outgoing(stream, probe(i, intent_id=f"intent-{i % intents}")) for i in range(start, start + count)
    ]


async def committed(pool: Pool, items: Sequence[Outgoing]) -> list[Outgoing]:
    async with pool.acquire() as conn, conn.transaction():
        return await enqueue(conn, items)


async def backdate(pool: Pool, items: Sequence[Outgoing], seconds: float) -> None:
    await pool.execute(
        "UPDATE pm.outbox SET created_at = created_at - make_interval(secs => $2) "
        "WHERE message_id = ANY($1::text[])",
        [item.message.message_id for item in items],
        seconds,
    )


async def rows(pool: Pool, items: Sequence[Outgoing]) -> dict[str, tuple[bool, int, str | None]]:
    """message id → (published, attempts, last_error) of `items`' rows."""
    found = await pool.fetch(
        "SELECT message_id, published_at IS NOT NULL AS published, attempts, last_error FROM pm.outbox "
        "WHERE message_id = ANY($1::text[])",
        [item.message.message_id for item in items],
    )
    return {r["message_id"]: (r["published"], r["attempts"], r["last_error"]) for r in found}


async def entries(redis: Redis, stream: str, partitions: int = 2) -> list[bytes]:
    """Every payload in the stream's partitions, in partition and then entry order."""
    payloads: list[bytes] = []
    for partition in range(partitions):
        for _, fields in await redis.xrange(stream_key(stream, partition)) or []:
            assert fields is not None
            payload = fields[PAYLOAD_FIELD]
            assert isinstance(payload, bytes)
            payloads.append(payload)
    return payloads


def relayed_total() -> float:
    return REGISTRY.get_sample_value("pm_outbox_relayed_total") or 0.0


async def test_enqueue_in_a_rolled_back_transaction_leaves_nothing(pool: Pool, stream: str) -> None:
    items = outgoing(stream, 3)
    async with pool.acquire() as conn:
        tx = conn.transaction()
        await tx.start()
        assert await enqueue(conn, items) == items
        assert len(await conn.fetch("SELECT 1 FROM pm.outbox WHERE stream = $1", stream)) == 3
        await tx.rollback()
    assert await rows(pool, items) == {}


async def test_enqueue_is_idempotent_on_message_id(pool: Pool, stream: str) -> None:
    first = outgoing(stream, 2)
    assert await committed(pool, first) == first
    again = outgoing(stream, 1, start=10)
    # A retried transaction re-enqueues what it wrote before; a repeat within one call counts once.
    assert await committed(pool, [first[1], again[0], again[0], first[0]]) == again
    assert set(await rows(pool, first + again)) == {item.message.message_id for item in first + again}
    assert await pool.fetchval("SELECT count(*) FROM pm.outbox WHERE stream = $1", stream) == 3
    assert await enqueue_nothing(pool) == []


async def enqueue_nothing(pool: Pool) -> list[Outgoing]:
    async with pool.acquire() as conn:
        return await enqueue(conn, [])


async def test_publish_committed_publishes_and_marks(pool: Pool, redis: Redis, stream: str) -> None:
    other = f"{stream}:other"
    await provision(redis, 2, [StreamSpec(other, (GROUP,), "outbox test")])
    try:
        items = outgoing(stream, 5) + outgoing(other, 2, start=5)
        fresh = await committed(pool, items)
        assert await publish_committed(pool, Publisher(redis, partitions=2), fresh) == 7
        assert sorted(await entries(redis, stream)) == sorted(encode(i.message) for i in items[:5])
        assert sorted(await entries(redis, other)) == sorted(encode(i.message) for i in items[5:])
        assert set((await rows(pool, items)).values()) == {(True, 1, None)}
    finally:
        await redis.delete(stream_key(other, 0), stream_key(other, 1))


@pytest.mark.parametrize("failure", ["stream_missing", "backpressure"])
async def test_failed_publish_leaves_rows_for_the_relay(
    pool: Pool, redis: Redis, stream_name: str, failure: str
) -> None:
    items = await committed(pool, outgoing(stream_name, 4))
    if failure == "stream_missing":
        publisher = Publisher(redis, partitions=2)
    else:
        await provision(redis, 2, [StreamSpec(stream_name, (GROUP,), "outbox test")])
        publisher = Publisher(redis, partitions=2, threshold=0)
    assert await publish_committed(pool, publisher, items) == 0
    assert set((await rows(pool, items)).values()) == {(False, 0, None)}

    await provision(redis, 2, [StreamSpec(stream_name, (GROUP,), "outbox test")])
    assert await Relay(pool, Publisher(redis, partitions=2), min_age_s=0).run_once() == 4
    assert sorted(await entries(redis, stream_name)) == sorted(encode(i.message) for i in items)
    assert set((await rows(pool, items)).values()) == {(True, 1, None)}


async def test_publish_committed_does_not_raise_when_redis_is_down(pool: Pool, stream: str) -> None:
    items = await committed(pool, outgoing(stream, 2))
    down = connect("redis://127.0.0.1:1/9")
    try:
        assert await publish_committed(pool, Publisher(down, partitions=2), items) == 0
    finally:
        await down.aclose()
    assert set((await rows(pool, items)).values()) == {(False, 0, None)}


async def test_relay_publishes_only_old_rows_exactly_as_stored(pool: Pool, redis: Redis, stream: str) -> None:
    old = await committed(pool, outgoing(stream, 4))
    young = await committed(pool, outgoing(stream, 2, start=4))
    await backdate(pool, old, 60)
    # Stored bytes that re-encoding the message would not give back: the relay must send these.
    await pool.execute(
        "UPDATE pm.outbox SET payload = payload || ' '::bytea WHERE message_id = ANY($1::text[])",
        [item.message.message_id for item in old],
    )
    stored = await pool.fetch(
        "SELECT payload FROM pm.outbox WHERE message_id = ANY($1::text[])",
        [item.message.message_id for item in old],
    )
    before = relayed_total()

    assert await Relay(pool, Publisher(redis, partitions=2), min_age_s=30).run_once() == 4

    assert sorted(await entries(redis, stream)) == sorted(bytes(r["payload"]) for r in stored)
    assert all(payload.endswith(b" ") for payload in await entries(redis, stream))
    state = await rows(pool, old + young)
    assert {state[i.message.message_id] for i in old} == {(True, 1, None)}
    assert {state[i.message.message_id] for i in young} == {(False, 0, None)}
    assert relayed_total() - before == 4
    age = REGISTRY.get_sample_value("pm_outbox_oldest_unpublished_age_seconds")
    assert age is not None and 0 < age < 30  # the young rows are what is left


async def test_relay_keeps_each_intents_order(pool: Pool, redis: Redis, stream: str) -> None:
    items = await committed(pool, outgoing(stream, 30, intents=4))
    await backdate(pool, items, 60)
    assert await Relay(pool, Publisher(redis, partitions=2), min_age_s=1).run_once() == 30
    published = await entries(redis, stream)
    for intent in range(4):
        sent = [encode(i.message) for i in items if i.message.intent_id == f"intent-{intent}"]
        assert [p for p in published if p in sent] == sent


async def test_two_relays_at_once_publish_each_row_once(pool: Pool, redis: Redis, stream: str) -> None:
    items = await committed(pool, outgoing(stream, 400, intents=50))
    await backdate(pool, items, 60)
    relays = [Relay(pool, Publisher(redis, partitions=2), min_age_s=1, batch=200) for _ in range(2)]

    done = await asyncio.gather(*(relay.run_once() for relay in relays))

    assert sorted(done) == [200, 200]
    published = await entries(redis, stream)
    assert len(published) == len(set(published)) == 400
    assert set(published) == {encode(i.message) for i in items}
    assert set((await rows(pool, items)).values()) == {(True, 1, None)}
    assert await relays[0].run_once() == 0


@pytest.mark.parametrize("failure", ["stream_missing", "backpressure"])
async def test_relay_records_failures_and_goes_on_with_the_other_streams(
    pool: Pool, redis: Redis, stream: str, failure: str
) -> None:
    if failure == "stream_missing":
        target = f"{stream}:missing"
        publisher = Publisher(redis, partitions=1)
        expected_error = "StreamMissingError"
    else:
        target = stream
        publisher = Publisher(redis, partitions=1, threshold=0)
        expected_error = "BackPressureError"
    # Everything goes to partition 0 of each stream; the failing key's rows come first (keys are
    # published in order of their first row), and the good stream's are published all the same.
    await provision(redis, 1, [StreamSpec(f"{stream}:good", (GROUP,), "outbox test")])
    bad = await committed(pool, outgoing(target, 3, start=2))
    good = await committed(pool, outgoing(f"{stream}:good", 2))
    await backdate(pool, good + bad, 60)
    if failure == "backpressure":
        publisher.threshold = 2  # room for the good stream's two rows only
        # The bad stream already has two outstanding entries, so it is refused.
        await redis.xadd(stream_key(target, 0), {PAYLOAD_FIELD: b"{}"})
        await redis.xadd(stream_key(target, 0), {PAYLOAD_FIELD: b"{}"})
    relay = Relay(pool, publisher, min_age_s=1)
    try:
        assert await relay.run_once() == 2
        assert await relay.run_once() == 0
        state = await rows(pool, good + bad)
        assert {state[i.message.message_id] for i in good} == {(True, 1, None)}
        for item in bad:
            published, attempts, error = state[item.message.message_id]
            assert not published and attempts == 2
            assert error is not None and expected_error in error
    finally:
        await redis.delete(stream_key(f"{stream}:good", 0))


async def test_run_publishes_until_stopped_and_survives_errors(
    pool: Pool, redis: Redis, stream: str, empty_database_url: str
) -> None:
    items = await committed(pool, outgoing(stream, 5))
    stop = asyncio.Event()
    task = asyncio.create_task(
        Relay(pool, Publisher(redis, partitions=2), min_age_s=0, interval_s=0.02).run(stop)
    )

    async def all_published() -> bool:
        return set((await rows(pool, items)).values()) == {(True, 1, None)}

    await eventually(all_published, timeout=5, what="the relay published every row")
    stop.set()
    await asyncio.wait_for(task, 2)

    # PostgreSQL gone (a closed pool) and Redis gone: the loop logs, backs off and keeps going.
    closed = await create_pool(empty_database_url, min_size=1, max_size=1)
    await closed.close()
    down = connect("redis://127.0.0.1:1/9")
    stop = asyncio.Event()
    tasks = [
        asyncio.create_task(Relay(closed, Publisher(redis), interval_s=0.01).run(stop)),
        asyncio.create_task(Relay(pool, Publisher(down), min_age_s=0, interval_s=0.01).run(stop)),
    ]
    late = await committed(pool, outgoing(stream, 1, start=5))
    try:
        await asyncio.sleep(0.3)
        assert not any(t.done() for t in tasks)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 2)
    finally:
        await down.aclose()
    published, attempts, error = (await rows(pool, late))[late[0].message.message_id]
    assert not published and attempts >= 1 and error is not None


async def test_prune_deletes_only_rows_published_before_the_retention_period(
    pool: Pool, redis: Redis, stream: str
) -> None:
    tag = uuid.uuid4().hex
    await pool.execute(
        "INSERT INTO pm.outbox (stream, intent_id, message_id, payload, published_at) "
        "SELECT $1, $2, $2 || ':' || n, '\\x00', CASE WHEN n <= 5 THEN now() - interval '2 hours' "
        "WHEN n <= 8 THEN now() END FROM generate_series(1, 10) AS n",
        stream,
        tag,
    )
    relay = Relay(pool, Publisher(redis), retention_s=3_600, prune_batch=2)
    assert await relay.prune() >= 5
    left = await pool.fetch(
        "SELECT message_id, published_at IS NULL AS unpublished FROM pm.outbox"
        " WHERE intent_id = $1 ORDER BY id",
        tag,
    )
    # The recently published (6-8) and the never published (9, 10) stay.
    assert [r["message_id"].split(":")[-1] for r in left] == ["6", "7", "8", "9", "10"]
    assert [r["unpublished"] for r in left] == [False, False, False, True, True]


async def test_a_refused_stream_does_not_hold_up_another(pool: Pool, redis: Redis, stream: str) -> None:
    await provision(redis, 1, [StreamSpec(f"{stream}:full", (GROUP,), "outbox test")])
    await provision(redis, 1, [StreamSpec(f"{stream}:open", (GROUP,), "outbox test")])
    try:
        for _ in range(3):
            await redis.xadd(stream_key(f"{stream}:full", 0), {PAYLOAD_FIELD: b"{}"})
        refused = outgoing(f"{stream}:full", 2)
        accepted = outgoing(f"{stream}:open", 2, start=2)
        items = await committed(pool, refused + accepted)
        assert await publish_committed(pool, Publisher(redis, partitions=1, threshold=3), items) == 2
        state = await rows(pool, items)
        assert [state[i.message.message_id][0] for i in items] == [False, False, True, True]
        assert sorted(await entries(redis, f"{stream}:open")) == sorted(encode(i.message) for i in accepted)
    finally:
        await redis.delete(stream_key(f"{stream}:full", 0), stream_key(f"{stream}:open", 0))


class BrokenPublisher(Publisher):
    """A publisher with a bug: not an error of Redis, not a RetryLater."""

    async def admit(self, key: str, count: int = 1) -> None:
        raise ValueError("a bug in the publish path")


async def test_a_bug_ends_the_relay_rather_than_being_retried_for_ever(
    pool: Pool, redis: Redis, stream: str
) -> None:
    await committed(pool, outgoing(stream, 1))
    relay = Relay(pool, BrokenPublisher(redis), min_age_s=0, interval_s=0.01)
    with pytest.raises(ValueError, match="a bug in the publish path"):
        await asyncio.wait_for(relay.run(asyncio.Event()), 5)


@pytest.mark.parametrize(
    ("exc", "again"),
    [
        (asyncpg.CannotConnectNowError("starting up"), True),
        (asyncpg.UndefinedTableError("relation pm.outbox does not exist"), True),
        (ResponseError("OOM command not allowed"), True),
        (BackPressureError("{pm:intents:0}", 10, 5, 1.0), True),
        (ValueError("a bug"), False),
    ],
    ids=type,
)
def test_which_failed_passes_the_relay_tries_again(exc: Exception, again: bool) -> None:
    assert worth_another_pass(exc) is again
