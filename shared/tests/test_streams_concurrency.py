"""The consumer's asyncio helpers: eager start keeps task semantics; the limiter bounds concurrency."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from pm_shared.streams.concurrency import Limiter, sleep_unless, start_eagerly

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="outer")


async def test_a_coroutine_that_never_waits_becomes_no_task() -> None:
    ran: list[int] = []

    async def quick() -> None:
        ran.append(1)

    assert start_eagerly(quick()) is None
    assert ran == [1]


async def test_a_waiting_coroutine_is_finished_by_a_task_with_its_own_context() -> None:
    seen: list[str] = []

    async def slow() -> None:
        var.set("inner")
        await asyncio.sleep(0.01)
        seen.append(var.get())
        await asyncio.sleep(0)  # a bare yield is passed through too
        seen.append("done")

    task = start_eagerly(slow())
    assert task is not None
    assert var.get() == "outer"  # the coroutine's variable did not leak into the caller
    await task
    assert seen == ["inner", "done"]


async def test_cancelling_the_task_cancels_the_coroutine_inside() -> None:
    cleaned: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            cleaned.append("finally")

    task = start_eagerly(slow())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]


async def test_exceptions_after_the_first_wait_reach_the_awaiter() -> None:
    async def failing() -> None:
        await asyncio.sleep(0.001)
        raise ValueError("boom")

    task = start_eagerly(failing())
    assert task is not None
    with pytest.raises(ValueError, match="boom"):
        await task


async def test_limiter_bounds_concurrency_and_passes_slots_in_order() -> None:
    limiter = Limiter(2)
    running = peak = 0
    order: list[int] = []

    async def work(n: int) -> None:
        nonlocal running, peak
        await limiter.acquire()
        try:
            running += 1
            peak = max(peak, running)
            order.append(n)
            await asyncio.sleep(0.005)
        finally:
            running -= 1
            limiter.release()

    await asyncio.gather(*(work(n) for n in range(8)))
    assert peak == 2
    assert order == list(range(8))
    assert limiter.free == 2


async def test_a_cancelled_waiter_does_not_lose_a_slot() -> None:
    limiter = Limiter(1)
    await limiter.acquire()
    waiter = asyncio.ensure_future(limiter.acquire())
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    limiter.release()
    assert limiter.free == 1
    await asyncio.wait_for(limiter.acquire(), 1)


async def test_sleep_unless_returns_early_when_stopped() -> None:
    stop = asyncio.Event()
    assert await sleep_unless(stop, 0.01) is False
    asyncio.get_running_loop().call_later(0.01, stop.set)
    assert await asyncio.wait_for(sleep_unless(stop, 10), 1) is True
