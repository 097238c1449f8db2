"""How a process of the fleet starts, runs its long-running tasks, and stops.

A service's `main.run()` calls `run_service(...)` with its settings loader and an async body that
works until a stop event is set. SIGTERM or SIGINT sets the event; the body finishes the batch in
hand and returns; the process exits 0. A body that does not return within the grace period is
cancelled and the process exits 1, so an orchestrator never waits forever.

The body runs every long-running task (consumers, relay, sweeps, an HTTP server) under
`supervise`: a task that dies, or ends before the stop event, cancels the others and ends the
process with exit code 1 and its traceback logged, instead of hiding until shutdown.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any, Protocol, TypeVar

from pm_shared import fleet, logs
from pm_shared.settings import CommonSettings, SettingsError
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.streams.subscriptions import (
    RedisClients,
    Subscription,
    consume,
    consumers_for,
    redis_clients,
    run_consumers_until,
)

__all__ = [
    "EXIT_CONFIG",
    "HttpServer",
    "RedisClients",
    "Subscription",
    "Supervisor",
    "consume",
    "consumers_for",
    "every",
    "redis_clients",
    "run_consumers_until",
    "run_service",
    "serve_http",
    "serve_standalone",
    "supervise",
    "tune_gc",
]

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)

Body = Callable[[S, asyncio.Event], Coroutine[Any, Any, None]]
"""A service's work: runs until the stop event is set, then returns."""

EXIT_CONFIG = 2

GC_THRESHOLDS = (100_000, 50, 100)
"""Generation thresholds for the cyclic garbage collector in every service (Python's are 700, 10, 10).

A batch of thousands of decoded messages and results is thousands of container allocations, which
at the default thresholds set off a young collection every few hundred messages and a full one
(walking every live object, the ledger's account cache included) every few batches: about a
fifth of the ledger-writer's time. Nearly all of these objects die by reference counting, so
collecting rarely costs little memory.
"""


def tune_gc() -> None:
    """Collect rarely (GC_THRESHOLDS), and leave everything alive at start-up out of collections."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


# -- the process -------------------------------------------------------------------------------


def run_service(service: str, load: Callable[[], S], body: Body[S]) -> None:
    """Run `body` as the process `service` until SIGTERM/SIGINT; never returns."""
    try:
        settings = load()
    except SettingsError as exc:
        print(f"pm-{service}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    logs.configure(service, settings.log_level, settings.log_format)
    tune_gc()
    code = asyncio.run(_main(service, settings, body))
    raise SystemExit(code)


async def _main(service: str, settings: S, body: Body[S]) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    task = asyncio.create_task(body(settings, stop), name=service)
    log.info("%s started", service)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([task, stopping], return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not task.done():
        done, _ = await asyncio.wait([task], timeout=settings.shutdown_grace_s)
        if not done:
            log.error("%s did not stop within %.0fs; cancelling", service, settings.shutdown_grace_s)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return 1
    if task.cancelled():
        return 1
    exc = task.exception()
    if exc is not None:
        log.critical("%s crashed: %s", service, _describe(exc), exc_info=exc)
        return 1
    if not stop.is_set():
        log.error("%s stopped on its own", service)
        return 1
    log.info("%s stopped cleanly", service)
    return 0


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    if not stop.is_set():
        log.info("received %s: finishing the batch in hand, then exiting", sig.name)
    stop.set()


def _describe(exc: BaseException) -> str:
    """The errors behind `exc`, task groups unwrapped: `TaskEnded: …; KeyError: 'x'`."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_describe(inner) for inner in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


# -- supervision -------------------------------------------------------------------------------


class TaskEnded(RuntimeError):
    """A long-running task returned while the service was not stopping."""


class Supervisor:
    """Starts a service's long-running tasks in one task group (see `supervise`)."""

    def __init__(self, group: asyncio.TaskGroup, stop: asyncio.Event, wind_down_s: float) -> None:
        self._group = group
        self._stop = stop
        self._wind_down_s = wind_down_s
        self._main: list[asyncio.Task[None]] = []
        self._helpers: list[asyncio.Task[None]] = []

    def start(
        self, name: str, work: Coroutine[Any, Any, object], *, helper: bool = False
    ) -> asyncio.Task[None]:
        """Run `work` until the stop event; it must not end before.

        A `helper` serves the others (a lease keeper, a follower): it may end whenever it likes,
        and is cancelled once every other task has ended.
        """
        task = self._group.create_task(self._watch(name, work, helper), name=name)
        (self._helpers if helper else self._main).append(task)
        return task

    async def _watch(self, name: str, work: Coroutine[Any, Any, object], helper: bool) -> None:
        try:
            await work
        except Exception as exc:
            exc.add_note(f"(in the task {name!r})")
            await self._others_finish()
            raise
        if not helper and not self._stop.is_set():
            ended = TaskEnded(f"{name} ended while the service was not stopping")
            await self._others_finish()
            raise ended

    async def _others_finish(self) -> None:
        """After a failure: ask every task to stop, as SIGTERM would, and give the others up to
        `wind_down_s` to finish what they hold (a consumer acks the batch it handled) before the task
        group cancels what is left. Cancelling at once would leave handled entries unacked, to be
        delivered again (counting a delivery) after the restart."""
        self._stop.set()
        me = asyncio.current_task()
        others = [task for task in self._main if task is not me and not task.done()]
        if others:
            await asyncio.wait(others, timeout=self._wind_down_s)

    async def _wind_down(self) -> None:
        if self._main:
            await asyncio.wait(self._main)
        for task in self._helpers:
            task.cancel()


WIND_DOWN_S = 10.0
"""How long the other tasks of a service get to finish what they hold after one of them failed."""


@asynccontextmanager
async def supervise(stop: asyncio.Event, wind_down_s: float = WIND_DOWN_S) -> AsyncIterator[Supervisor]:
    """A task group for a service's long-running tasks, left once they have all ended.

    A task that raises, or that ends while `stop` is not set, sets `stop` so the others finish what
    they hold (up to `wind_down_s`), then cancels what is left, and the block raises (an
    ExceptionGroup, each error noted with its task's name): `run_service` then logs it with its
    traceback and exits 1. A stop request ends everything cleanly: each task finishes what it has in
    hand and returns.
    """
    async with asyncio.TaskGroup() as group:
        supervisor = Supervisor(group, stop, wind_down_s)
        yield supervisor
        await supervisor._wind_down()


async def every(
    interval_s: float, stop: asyncio.Event, work: Callable[[], Awaitable[object]], what: str
) -> None:
    """Until `stop`: wait `interval_s`, then run `work`. A pass that fails is logged (an outage as a
    warning, a bug with its traceback) and the next one tries again: one bad pass must not end it."""
    while not await sleep_unless(stop, interval_s):
        try:
            await work()
        except Exception as exc:
            logs.failure(log, exc, "%s failed", what)


# -- HTTP servers ------------------------------------------------------------------------------


class HttpServer(Protocol):
    """What these helpers need of an HTTP server; uvicorn's `Server` has it."""

    should_exit: bool
    started: bool

    async def serve(self) -> None: ...


HTTP_CLOSE_TIMEOUT_S = 10.0
"""How long a server whose service is failing may take to close before it is cancelled."""


async def serve_http(server: HttpServer, stop: asyncio.Event, where: str) -> None:
    """Serve until `stop`, then let `server` finish the requests in hand.

    The server must leave SIGTERM and SIGINT to `run_service` (uvicorn: a `capture_signals` that
    does nothing). Raises when it could not listen on `where` (it ends on its own then).
    """
    serving = asyncio.create_task(server.serve(), name=f"http {where}")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait([serving, stopping], return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await serving
    except asyncio.CancelledError:
        # Another task of the service failed: the server still closes its sockets and connections
        # (cancelling it instead would leave its listening socket open until the process ends).
        server.should_exit = True
        await asyncio.wait([serving], timeout=HTTP_CLOSE_TIMEOUT_S)
        raise
    finally:
        stopping.cancel()
        serving.cancel()
    if not server.started:
        raise RuntimeError(f"could not listen on {where}")


def serve_standalone(member: fleet.Member, server: HttpServer, log_level: str = "INFO") -> None:
    """Run `server` as the process `member` (a sandbox: no fleet settings, no stop event) until
    SIGTERM or SIGINT, then exit 0; logs are text lines on stderr."""
    logs.configure(member.name, log_level, "text")
    # httpx logs every request at INFO: one line per callback.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    # uvicorn handles both signals while it serves and, once it has shut down, raises the signal again
    # for the handler that was there before it. That handler exits 0: the default one would end the
    # process by the signal (exit code -15), which `pm up` reports as a failure.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _exit_cleanly)
    asyncio.run(server.serve())


def _exit_cleanly(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)
