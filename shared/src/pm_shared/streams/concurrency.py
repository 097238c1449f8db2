"""Asyncio helpers of the consumer: a bounded-concurrency limiter, eager handler start, stop-aware sleep."""

from __future__ import annotations

import asyncio
import collections
import contextvars
import types
from collections.abc import Awaitable, Coroutine, Generator
from typing import Any


class Limiter:
    """A semaphore whose uncontended acquire does not wait (handlers are usually far below the limit)."""

    def __init__(self, limit: int) -> None:
        self.free = limit
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()

    def acquire(self) -> Awaitable[None]:
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return _DONE
        return self._wait()

    async def _wait(self) -> None:
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self.release()  # we were handed a slot we will not use
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the slot passes straight to the waiter
                return
        self.free += 1


class _Done:
    def __await__(self) -> Generator[Any, None, None]:
        return
        yield


_DONE = _Done()


def start_eagerly(coro: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run `coro` until it first waits; only then does it become a task (None: it already finished).

    A handler that finishes without waiting (a duplicate seen in a cache, say) then costs no task;
    this is what Python 3.12's eager tasks do. The coroutine runs in a context of its own from its
    first step, as it would in a task, so context variables it sets stay its own.
    """
    context = contextvars.copy_context()
    try:
        blocked_on = context.run(coro.send, None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(_finish(coro, blocked_on), context=context)


async def _finish(coro: Coroutine[Any, Any, None], blocked_on: Any) -> None:
    await _resume(coro, blocked_on)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, None], blocked_on: Any) -> Generator[Any, Any, None]:
    """Drive a started coroutine from inside a task: hand the task what it waits on, pass back results."""
    while True:
        try:
            value = yield blocked_on
        except BaseException as exc:  # cancellation and the like go to the coroutine, as in a task
            try:
                blocked_on = coro.throw(exc)
            except StopIteration:
                return
            continue
        try:
            blocked_on = coro.send(value)
        except StopIteration:
            return


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True when `stop` was set (at once or meanwhile)."""
    if stop.is_set():
        return True
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


YIELD_EVERY = 1024
"""Items a long loop over a batch handles between two turns of the event loop (see `take_turns`)."""


async def take_turns(index: int) -> None:
    """Every `YIELD_EVERY` items, let other tasks run.

    A loop over thousands of entries otherwise holds the event loop for tens of milliseconds, and a
    task whose database or Redis reply has arrived meanwhile (the ledger writer's request in flight,
    say) waits that long to go on.
    """
    if index % YIELD_EVERY == YIELD_EVERY - 1:
        await asyncio.sleep(0)
