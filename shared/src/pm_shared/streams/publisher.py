"""Publishing with back-pressure: refuse before the downstream group falls behind, never trim unacked work.

`MAXLEN ~ N` trimming ignores consumer groups, so an entry that is undelivered or unacked would
be deleted if a stream ever grew past N. The publisher therefore checks, before every dispatch,
outstanding = lag + pending of the downstream groups (one `XINFO GROUPS`, cached for at most
100 ms, plus what this process added since that reading) against a threshold of half of N.
"""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import msgspec
from redis.asyncio import Redis

from pm_shared.messages import Message
from pm_shared.pipelined import Pipelined
from pm_shared.settings import CommonSettings
from pm_shared.streams import metrics
from pm_shared.streams.connection import as_str
from pm_shared.streams.errors import BackPressureError, StreamMissingError
from pm_shared.streams.names import StreamSpec, partition_of, stream_key
from pm_shared.streams.stats import outstanding

PAYLOAD_FIELD = b"m"
CACHE_S = 0.1
# Before refusing on a cached reading, read again if it is older than this.
RECHECK_S = 0.01

_encoder = msgspec.json.Encoder()

# XADD of many payloads to one stream in one call (NOMKSTREAM for all: nothing when the stream is
# missing). The payloads travel as one argument, each behind its 4-byte big-endian length: redis-py
# packs every argument in Python, so one argument instead of one per entry is most of the saving.
# Entries per call are bounded so one call never holds Redis for long.
_ADD_MANY = """
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
local data, ids, pos = ARGV[2], {}, 1
while pos <= #data do
  local size, start = struct.unpack('>I4', data, pos)
  pos = start + size
  local payload = string.sub(data, start, pos - 1)
  ids[#ids + 1] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'm', payload)
end
return ids
"""
_LENGTH = struct.Struct(">I")
SCRIPT_CHUNK = 1_000


def encode(message: Message) -> bytes:
    return _encoder.encode(message)


@dataclass
class _Reading:
    outstanding: int
    at: float
    added_since: int = 0


class Publisher:
    """XADD with `MAXLEN ~ maxlen` and `NOMKSTREAM`, after a back-pressure check per partition."""

    def __init__(
        self,
        redis: Redis,
        *,
        partitions: int = 1,
        maxlen: int = 10_000,
        threshold: int | None = None,
        retry_after_s: float = 1.0,
        coalesce_adds: bool = False,
    ) -> None:
        self.redis = redis
        self.partitions = partitions
        self.maxlen = maxlen
        self.threshold = maxlen // 2 if threshold is None else threshold
        self.retry_after_s = retry_after_s
        self._readings: dict[str, _Reading] = {}
        self._refreshing: dict[str, asyncio.Future[_Reading]] = {}
        self._add_many = redis.register_script(_ADD_MANY)
        # Concurrent `add`s in one pipeline: for a producer with many adds in flight at once (the
        # gateway, one per request); a lone add pays for the pipeline (pm bench: one awaited add per
        # message fell from 87 % to 65 % of a bare XADD), so it is off by default.
        self._calls = Pipelined(redis) if coalesce_adds else None

    @classmethod
    def from_settings(cls, redis: Redis, settings: CommonSettings) -> Publisher:
        """A publisher with the fleet's partitions, stream length and back-pressure threshold."""
        return cls(
            redis,
            partitions=settings.stream_partitions,
            maxlen=settings.stream_maxlen,
            threshold=settings.backpressure_threshold,
        )

    def key_for(self, stream: StreamSpec | str, intent_id: str) -> str:
        name = stream if isinstance(stream, str) else stream.name
        return stream_key(name, partition_of(intent_id, self.partitions))

    async def admit(self, key: str, count: int = 1) -> None:
        """Reserve room for `count` entries on `key` or raise BackPressureError."""
        reading = self._readings.get(key)
        if reading is None or time.monotonic() - reading.at > CACHE_S:
            reading = await self._refresh(key)
        estimate = reading.outstanding + reading.added_since
        if estimate + count > self.threshold and time.monotonic() - reading.at > RECHECK_S:
            # The estimate only grows between readings; consumers may have drained since.
            reading = await self._refresh(key)
            estimate = reading.outstanding + reading.added_since
        if estimate + count > self.threshold:
            metrics.BACKPRESSURE.labels(key).inc()
            raise BackPressureError(key, estimate, self.threshold, self.retry_after_s)
        reading.added_since += count

    async def headroom(self, key: str) -> int:
        """How many more entries `key` takes before producers are refused (negative when over);
        reserves nothing. For a producer that holds its own input while the downstream drains."""
        reading = self._readings.get(key)
        if reading is None or time.monotonic() - reading.at > CACHE_S:
            reading = await self._refresh(key)
        return self.threshold - (reading.outstanding + reading.added_since)

    async def _refresh(self, key: str) -> _Reading:
        # One XINFO GROUPS per key at a time, however many coroutines publish concurrently.
        pending = self._refreshing.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[_Reading] = asyncio.get_running_loop().create_future()
        self._refreshing[key] = future
        try:
            reading = _Reading(await outstanding(self.redis, key, self.threshold), time.monotonic())
            self._readings[key] = reading
            future.set_result(reading)
            return reading
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so a failure nobody else awaited is not reported twice
            raise
        finally:
            del self._refreshing[key]

    async def publish(self, stream: StreamSpec | str, message: Message) -> str:
        """Add `message` to its intent's partition of `stream`; returns the entry id."""
        key = self.key_for(stream, message.intent_id)
        await self.admit(key)
        return await self.add(key, {PAYLOAD_FIELD: encode(message)})

    async def publish_many(self, stream: StreamSpec | str, messages: Sequence[Message]) -> list[str]:
        """Add many messages, one script call per partition and chunk; all are admitted before any is sent.

        A script rather than a pipeline of XADDs: redis-py packs every pipelined command on its own,
        which costs about 13 µs per entry against about 1 µs for one call carrying all payloads in one
        argument.
        """
        by_key = self._by_key(stream if isinstance(stream, str) else stream.name, messages)
        for key, indexes in by_key.items():
            await self.admit(key, len(indexes))
        ids: list[str] = [""] * len(messages)
        encode, length = _encoder.encode, _LENGTH.pack
        for key, indexes in by_key.items():
            for start in range(0, len(indexes), SCRIPT_CHUNK):
                chunk = indexes[start : start + SCRIPT_CHUNK]
                frames = []
                for i in chunk:
                    payload = encode(messages[i])
                    frames.append(length(len(payload)))
                    frames.append(payload)
                added = await self._add_many(keys=[key], args=[self.maxlen, b"".join(frames)])
                if not added:
                    raise StreamMissingError(key)
                for index, entry_id in zip(chunk, added, strict=True):
                    ids[index] = entry_id.decode() if type(entry_id) is bytes else as_str(entry_id)
            metrics.PUBLISHED.labels(key).inc(len(indexes))
        return ids

    def _by_key(self, name: str, messages: Sequence[Message]) -> Mapping[str, Sequence[int]]:
        """The indexes of `messages` per partition key, in order."""
        if self.partitions == 1:
            # Every message goes to the one key: nothing to hash per message.
            return {stream_key(name, 0): range(len(messages))} if messages else {}
        by_key: dict[str, list[int]] = {}
        for index, message in enumerate(messages):
            key = stream_key(name, partition_of(message.intent_id, self.partitions))
            by_key.setdefault(key, []).append(index)
        return by_key

    async def add(self, key: str, fields: dict[bytes, bytes]) -> str:
        """XADD already-admitted `fields` to `key` (with `coalesce_adds`, in one pipeline with other
        callers' concurrent adds: `pm_shared.pipelined`)."""
        maxlen = self.maxlen
        if self._calls is None:
            entry_id = await self.redis.xadd(key, fields, maxlen=maxlen, approximate=True, nomkstream=True)  # type: ignore[arg-type]
        else:
            entry_id = await self._calls(
                lambda pipe: pipe.xadd(key, fields, maxlen=maxlen, approximate=True, nomkstream=True)  # type: ignore[arg-type]
            )
        if entry_id is None:
            raise StreamMissingError(key)
        metrics.PUBLISHED.labels(key).inc()
        return as_str(entry_id)
