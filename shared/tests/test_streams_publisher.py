"""The publisher refuses before the downstream group falls behind; trimming never eats unacked work."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared.streams import BackPressureError, Publisher, StreamMissingError
from pm_shared.streams.connection import as_str
from pm_shared.streams.names import stream_key
from pm_shared.streams.provision import ensure_group, provision
from pm_shared.streams.stats import groups, outstanding
from pm_tools.testing.worker import Probe, probe


async def test_refuses_before_outstanding_reaches_maxlen_and_nothing_unacked_is_trimmed(
    redis: Redis, stream_name: str
) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "downstream")
    maxlen = 200
    publisher = Publisher(redis, maxlen=maxlen)  # threshold: half of maxlen
    published: list[str] = []
    with pytest.raises(BackPressureError) as refused:
        for seq in range(10 * maxlen):
            published.append(await publisher.publish(stream_name, probe(seq)))
            if seq % 37 == 0:
                # Read some without acking: pending counts as outstanding as much as lag does.
                await redis.xreadgroup("downstream", "c", {key: ">"}, count=5)
    assert refused.value.retry_after_s > 0
    assert len(published) == publisher.threshold
    info = (await groups(redis, key))[0]
    assert info.lag is not None
    assert info.lag + info.pending == len(published) < maxlen
    # Every entry that is undelivered or unacked is still in the stream: count them one by one.
    present = {as_str(entry_id) for entry_id, _ in await redis.xrange(key) or []}
    assert set(published) <= present


async def test_acking_makes_room_again(redis: Redis, stream_name: str) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "downstream")
    publisher = Publisher(redis, maxlen=100, threshold=10)
    await publisher.publish_many(stream_name, [probe(i) for i in range(10)])
    with pytest.raises(BackPressureError):
        await publisher.publish(stream_name, probe(10))
    reply: Any = await redis.xreadgroup("downstream", "c", {key: ">"}, count=100)
    await redis.xack(key, "downstream", *[entry_id for entry_id, _ in reply[0][1]])
    await asyncio.sleep(0.11)  # past the cached reading
    await publisher.publish(stream_name, probe(11))


async def test_unknown_lag_is_counted_not_read_as_zero(redis: Redis, stream_name: str) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "downstream")
    ids = [await redis.xadd(key, {b"m": b"{}"}) for _ in range(8)]
    await redis.xdel(key, ids[3])  # deleting an undelivered entry makes Redis report lag as NULL
    assert (await groups(redis, key))[0].lag is None
    assert await outstanding(redis, key, limit=100) == 7
    publisher = Publisher(redis, maxlen=100, threshold=7)
    with pytest.raises(BackPressureError):
        await publisher.publish(stream_name, probe(1))


async def test_partitions_get_their_own_check(redis: Redis, stream_name: str) -> None:
    publisher = Publisher(redis, partitions=4, maxlen=100, threshold=3)
    for p in range(4):
        await ensure_group(redis, stream_key(stream_name, p), "downstream")
    sent = 0
    for i in range(40):
        try:
            await publisher.publish(stream_name, probe(i, intent_id=f"intent-{i}"))
            sent += 1
        except BackPressureError:
            pass
    assert sent == 12  # three per partition
    for p in range(4):
        assert await redis.xlen(stream_key(stream_name, p)) == 3


async def test_same_intent_always_lands_on_one_partition(redis: Redis, stream_name: str) -> None:
    publisher = Publisher(redis, partitions=4, maxlen=1000)
    for p in range(4):
        await ensure_group(redis, stream_key(stream_name, p), "downstream")
    for i in range(5):
        await publisher.publish(stream_name, probe(i, intent_id="intent-one"))
    lengths = [await redis.xlen(stream_key(stream_name, p)) for p in range(4)]
    assert sorted(lengths) == [0, 0, 0, 5]


async def test_publishing_to_an_unprovisioned_stream_fails_and_creates_nothing(
    redis: Redis, stream_name: str
) -> None:
    publisher = Publisher(redis, maxlen=100)
    with pytest.raises(StreamMissingError):
        await publisher.add(stream_key(stream_name, 0), {b"m": b"{}"})
    assert not await redis.exists(stream_key(stream_name, 0))


async def test_provisioning_is_idempotent(redis: Redis, stream_name: str) -> None:
    from pm_shared.streams.names import StreamSpec

    spec = StreamSpec(stream_name, ("a", "b"), "test")
    assert await provision(redis, 2, [spec]) == 4
    assert await provision(redis, 2, [spec]) == 0
    assert {g.name for g in await groups(redis, stream_key(stream_name, 1))} == {"a", "b"}


async def test_publish_many_keeps_the_callers_order_across_partitions(redis: Redis, stream_name: str) -> None:
    publisher = Publisher(redis, partitions=3, maxlen=10_000)
    for p in range(3):
        await ensure_group(redis, stream_key(stream_name, p), "downstream")
    messages = [probe(i, intent_id=f"intent-{i}") for i in range(2_500)]  # more than one script call per key
    ids = await publisher.publish_many(stream_name, messages)
    for message, entry_id in zip(messages, ids, strict=True):
        key = publisher.key_for(stream_name, message.intent_id)
        found: Any = await redis.xrange(key, min=entry_id, max=entry_id)
        ((_, fields),) = found
        assert msgspec.json.decode(fields[b"m"], type=Probe) == message


async def test_publish_many_to_an_unprovisioned_stream_fails_and_creates_nothing(
    redis: Redis, stream_name: str
) -> None:
    publisher = Publisher(redis, maxlen=100)
    with pytest.raises(StreamMissingError):
        await publisher.publish_many(stream_name, [probe(1), probe(2)])
    assert not await redis.exists(stream_key(stream_name, 0))


async def test_headroom_reports_room_left_and_reserves_nothing(redis: Redis, stream_name: str) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "downstream")
    publisher = Publisher(redis, maxlen=100, threshold=10)
    assert await publisher.headroom(key) == 10
    await publisher.publish_many(stream_name, [probe(i) for i in range(7)])
    assert await publisher.headroom(key) == 3
    assert await publisher.headroom(key) == 3  # asking twice takes nothing
    await publisher.publish_many(stream_name, [probe(i) for i in range(7, 10)])
    assert await publisher.headroom(key) == 0
    reply: Any = await redis.xreadgroup("downstream", "c", {key: ">"}, count=4)
    await redis.xack(key, "downstream", *[entry_id for entry_id, _ in reply[0][1]])
    await asyncio.sleep(0.11)  # past the cached reading
    assert await publisher.headroom(key) == 4


@pytest.mark.parametrize("coalesce", [False, True])
async def test_concurrent_adds_each_get_their_own_entry_s_id(
    redis: Redis, stream_name: str, coalesce: bool
) -> None:
    key = stream_key(stream_name, 0)
    await ensure_group(redis, key, "downstream")
    publisher = Publisher(redis, maxlen=1_000, coalesce_adds=coalesce)
    ids = await asyncio.gather(*(publisher.add(key, {b"n": str(n).encode()}) for n in range(30)))

    entries = {as_str(entry_id): (fields or {})[b"n"] for entry_id, fields in await redis.xrange(key) or []}
    assert [entries[entry_id] for entry_id in ids] == [str(n).encode() for n in range(30)]
    if coalesce:  # one pipeline: the entries are in the order of the calls too
        assert list(entries) == list(ids)


async def test_a_coalesced_add_to_an_unprovisioned_stream_fails_alone(redis: Redis, stream_name: str) -> None:
    provisioned = stream_key(stream_name, 0)
    await ensure_group(redis, provisioned, "downstream")
    publisher = Publisher(redis, maxlen=100, coalesce_adds=True)
    ok, missing = await asyncio.gather(
        publisher.add(provisioned, {b"m": b"{}"}),
        publisher.add(stream_key(stream_name, 1), {b"m": b"{}"}),
        return_exceptions=True,
    )
    assert isinstance(ok, str) and isinstance(missing, StreamMissingError)
    assert not await redis.exists(stream_key(stream_name, 1))
