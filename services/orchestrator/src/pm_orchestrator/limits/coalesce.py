"""Concurrent calls of one Lua script, sent together: the calls made while the event loop runs one
round go out in one pipeline, in the order they were made, and each caller gets its own reply.

The saga plans a batch's intakes concurrently, and each reserves its limits with one script call: on
a machine where a loopback round trip costs ~170 µs and every wake-up waits for a core, a hundred of
them one after the other were most of an intake batch's time (docs/saga.md, "Limits").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_Call = tuple[list[Any], list[Any], "asyncio.Future[Any]"]


class Coalesced:
    """`await calls(keys=[…], args=[…])` runs `script`, batched with the other calls of the same round."""

    def __init__(self, redis: Redis, script: AsyncScript) -> None:
        self.redis = redis
        self.script = script
        self._queue: list[_Call] = []
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((list(keys), list(args), future))
        return future

    def _flush(self) -> None:
        calls, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[_Call]) -> None:
        try:
            if len(calls) == 1:
                keys, args, future = calls[0]
                _settle(future, await self.script(keys=keys, args=args))
                return
            async with self.redis.pipeline(transaction=False) as pipe:
                for keys, args, _ in calls:
                    await self.script(keys=keys, args=args, client=pipe)  # queued, not sent
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection, or this task cancelled: every caller hears of it
            for _, _, future in calls:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError(repr(exc)))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(calls, replies, strict=True):
            _settle(future, reply)


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller was cancelled meanwhile
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)
