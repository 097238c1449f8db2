"""Closed-loop load: `concurrency` workers, each starting its next operation as soon as its last one is
done, for a warm-up and then a timed window, each worker on a keep-alive connection of its own.

The merchant-charge and front-door benchmarks compare two ways of doing one thing at the same
concurrency. A closed loop finds the throughput each way reaches without an offered rate to guess:
offered open-loop below capacity, both would reach the offered rate and their ratio would say
nothing. Throughput counts the operations that *ended* inside the window (warm-up and the drain after
it left out), so the figure is the rate the system kept up while every worker was busy.

Each worker has an httpx client of its own with one connection (as `gateway` explains, one client
with a pool of many costs the generator far more CPU per request), connected before the clock starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import httpx

T = TypeVar("T")
REQUEST_TIMEOUT_S = 30.0
READY_PATH = "/healthz"
"""What each client asks once before the clock starts (opening its connection)."""


class ExhaustedError(Exception):
    """Raised by an operation that has nothing left to do: its worker stops, and the loop records it
    with the exception's message (a run that ran out is a lower bound, and says why)."""


@dataclass(frozen=True)
class Timed(Generic[T]):
    """One operation: when it started and ended (epoch s), what it returned, or the transport error
    that cut it short (then `value` is None)."""

    started: float
    ended: float
    value: T | None
    error: str | None = None


@dataclass(frozen=True)
class Loop(Generic[T]):
    """Every operation of one closed-loop run, warm-up and drain included."""

    records: list[Timed[T]]
    window_start: float
    """Epoch s: the end of the warm-up."""
    window_end: float
    """Epoch s: when the workers stopped starting new operations."""
    generator_cpu: float
    """This process's CPU time over the wall time of the run (1.0: one core, busy throughout)."""
    exhausted: bool = False
    """Some worker ran out of work before the window ended (its figures are then a lower bound)."""
    exhausted_why: str | None = None
    """The message of the first `ExhaustedError` that stopped a worker before the window ended."""

    @property
    def seconds(self) -> float:
        return self.window_end - self.window_start

    def in_window(self, ok: Callable[[Timed[T]], bool]) -> list[Timed[T]]:
        """The operations `ok` accepts that ended inside the window (they make the throughput)."""
        return [r for r in self.records if self.window_start <= r.ended <= self.window_end and ok(r)]

    def started_in_window(self) -> list[Timed[T]]:
        """The operations started inside the window (their latencies are the run's)."""
        return [r for r in self.records if self.window_start <= r.started < self.window_end]

    def rate(self, ok: Callable[[Timed[T]], bool]) -> float:
        """Operations `ok` accepts that ended inside the window, per second."""
        return len(self.in_window(ok)) / self.seconds if self.seconds > 0 else 0.0


def client(base: str) -> httpx.AsyncClient:
    """A client of `base` with one keep-alive connection (no default auth: each request says its own)."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return httpx.AsyncClient(base_url=base, limits=limits, timeout=REQUEST_TIMEOUT_S, trust_env=False)


async def run(
    base: str,
    concurrency: int,
    warmup_s: float,
    seconds: float,
    operation: Callable[[httpx.AsyncClient, int], Awaitable[T]],
) -> Loop[T]:
    """`concurrency` workers calling `operation(client, n)` (n: the operation's number, from 0) on
    clients of `base`, back to back, for `warmup_s` + `seconds`; the operations under way then finish.
    A transport error (httpx.HTTPError) is recorded in its operation's place; `ExhaustedError` stops
    the worker that meets it; anything else raises."""
    records: list[Timed[T]] = []
    exhausted: list[str] = []
    counter = iter(range(1 << 62))
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(client(base)) for _ in range(concurrency)]
        await asyncio.gather(*(c.get(READY_PATH) for c in clients))
        wall, cpu = time.perf_counter(), time.process_time()
        epoch = time.time()
        stop = wall + warmup_s + seconds

        async def worker(http: httpx.AsyncClient) -> None:
            while time.perf_counter() < stop:
                started = time.time()
                try:
                    value: T | None = await operation(http, next(counter))
                    error = None
                except httpx.HTTPError as exc:
                    value, error = None, repr(exc)
                except ExhaustedError as exc:
                    if time.perf_counter() < stop:
                        exhausted.append(str(exc) or "ran out of work")
                    return
                records.append(Timed(started, time.time(), value, error))

        await asyncio.gather(*(worker(c) for c in clients))
        generator_cpu = (time.process_time() - cpu) / (time.perf_counter() - wall)
    window = (epoch + warmup_s, epoch + warmup_s + seconds)
    why = exhausted[0] if exhausted else None
    return Loop(records, *window, generator_cpu, exhausted=why is not None, exhausted_why=why)


def first_error(errors: Sequence[str | None]) -> str | None:
    return next((e for e in errors if e), None)
