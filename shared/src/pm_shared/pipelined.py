"""Redis commands of concurrent callers, sent together: the commands queued while the event loop runs
one round go out as one pipeline (no MULTI), in the order they were queued, and each caller gets its
own reply or its own error.

On a VM a loopback round trip is dear (docs/bench.md, "Where the time and the cores go": a Redis
PING from Python takes ~170 µs, a send ~17 µs of CPU), and a busy service makes many small calls at
once: the saga reserving limits for every intent of a batch, the gateway claiming a nonce and
adding an intent for every request in flight. Each such call becomes one command of a shared
pipeline instead of a round trip of its own.

A pipeline is retried whole on a lost connection, as a lone command is (`streams.connection`), so
only idempotent or guarded commands belong here: a `SET … NX GET` with a token of the caller's own,
an `XADD` of a message its consumers deduplicate, a script that is idempotent per intent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

Queue = Callable[[Pipeline], object]
"""Queues one command on the pipeline (`lambda pipe: pipe.set(...)`); may return a coroutine to await
(a registered script called with `client=pipe`)."""


class Pipelined:
    """`await calls(lambda pipe: pipe.xadd(...))`: the command's reply, sent with the others of the round."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self._queue: list[tuple[Queue, asyncio.Future[Any]]] = []
        self._sending: set[asyncio.Task[None]] = set()

    def __call__(self, queue: Queue) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)
        self._queue.append((queue, future))
        return future

    def _flush(self) -> None:
        calls, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(calls))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, calls: list[tuple[Queue, asyncio.Future[Any]]]) -> None:
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for queue, _ in calls:
                    queued = queue(pipe)
                    if asyncio.iscoroutine(queued):
                        await queued
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection, or this task cancelled: every caller hears of it
            for _, future in calls:
                if future.done():
                    continue
                if isinstance(exc, Exception):
                    future.set_exception(exc)
                else:
                    future.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(calls, replies, strict=True):
            if future.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
