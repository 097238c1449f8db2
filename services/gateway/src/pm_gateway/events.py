"""`Prefer: wait`: requests parked until their intent is terminal (or waits for its payer, who has a QR
to pay), woken from `pm:events`.

Every gateway process reads every partition of `pm:events` with a plain `XREAD` from the moment it
started (no consumer group: each instance must see every event) and resolves the futures
of the intents that became terminal or now await their payer. A waiter registers before it reads the
intent's state from PostgreSQL, so an event arriving in between is never missed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterator

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_client.api import TERMINAL_STATES
from pm_shared.messages import IntentStateChanged
from pm_shared.streams.names import EVENTS, stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD

log = logging.getLogger(__name__)

BLOCK_MS = 2_000

_decoder = msgspec.json.Decoder(IntentStateChanged)


class EventWaiters:
    def __init__(self, reader: Redis, partitions: int) -> None:
        self.reader = reader
        self.keys = [stream_key(EVENTS.name, p) for p in range(partitions)]
        self._waiting: dict[str, set[asyncio.Future[str]]] = defaultdict(set)
        self.ready = asyncio.Event()

    @contextlib.contextmanager
    def waiting_for(self, intent_id: str) -> Iterator[asyncio.Future[str]]:
        """A future resolved with the state of `intent_id` once it is terminal or awaits its payer
        (register, then read the state)."""
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiting[intent_id].add(future)
        try:
            yield future
        finally:
            waiters = self._waiting.get(intent_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[intent_id]

    async def run(self, stop: asyncio.Event) -> None:
        async with asyncio.TaskGroup() as tasks:
            for key in self.keys:
                tasks.create_task(self._follow(key, stop))

    async def _follow(self, key: str, stop: asyncio.Event) -> None:
        last: bytes | str = "$"
        backoff = 0.1
        while not stop.is_set():
            try:
                if last == "$":
                    # Start from the newest entry id, so nothing between reads is skipped.
                    info = await self.reader.xinfo_stream(key)
                    last = info["last-generated-id"]
                    self.ready.set()
                reply: (
                    list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None
                ) = await self.reader.xread(  # type: ignore[assignment]
                    {key: last}, count=1000, block=BLOCK_MS
                )
                backoff = 0.1
            except (RedisConnectionError, RedisTimeoutError, ResponseError) as exc:
                # ResponseError: the stream is not provisioned yet (`pm streams --provision`).
                log.warning("reading %s for waiting requests failed (%s); retrying", key, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            for _, entries in reply or []:
                for entry_id, fields in entries:
                    last = entry_id
                    self._dispatch(fields.get(PAYLOAD_FIELD))

    def _dispatch(self, payload: bytes | None) -> None:
        if payload is None or not self._waiting:
            return
        try:
            event = _decoder.decode(payload)
        except msgspec.DecodeError:
            return  # not ours to judge here: the reconciler dead-letters what it cannot read
        if event.state not in TERMINAL_STATES and not event.awaits_payer:
            return
        for future in self._waiting.get(event.intent_id, ()):
            if not future.done():
                future.set_result(event.state)
