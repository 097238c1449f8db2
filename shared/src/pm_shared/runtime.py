"""How a service process starts and stops: settings, logs, signals, Redis clients, graceful exit.

A service's `main.run()` calls `run_service(...)` with its settings loader and an async body that
works until a stop event is set. SIGTERM or SIGINT sets the event; the body finishes the batch in
hand and returns; the process exits 0. A body that does not return within the grace period is
cancelled and the process exits 1, so an orchestrator never waits forever.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_shared import health, logs
from pm_shared.health import ReadyCheck
from pm_shared.settings import CommonSettings, ServiceSettings, SettingsError
from pm_shared.streams import monitor
from pm_shared.streams.connection import connect
from pm_shared.streams.consumer import BatchHandler, Consumer, MessageHandler
from pm_shared.streams.provision import provision

log = logging.getLogger(__name__)

S = TypeVar("S", bound=CommonSettings)
SS = TypeVar("SS", bound=ServiceSettings)

EXIT_CONFIG = 2


@dataclass(frozen=True)
class RedisClients:
    commands: Redis
    """For ordinary commands; retries transient failures."""
    reader: Redis
    """For blocking stream reads; never retries (the consumer recovers instead)."""


@asynccontextmanager
async def redis_clients(settings: CommonSettings, name: str) -> AsyncIterator[RedisClients]:
    commands = connect(settings.redis_url, name=name)
    reader = connect(settings.redis_url, blocking_reads=True, name=f"{name}-reader")
    try:
        yield RedisClients(commands, reader)
    finally:
        await reader.aclose()
        await commands.aclose()


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


def run_service(
    service: str, load: Callable[[], S], body: Callable[[S, asyncio.Event], Coroutine[Any, Any, None]]
) -> None:
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


async def _main(
    service: str, settings: S, body: Callable[[S, asyncio.Event], Coroutine[Any, Any, None]]
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    task = asyncio.create_task(body(settings, stop), name=service)
    log.info("%s started", service)
    await asyncio.wait([task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
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
        log.critical("%s crashed: %s", service, exc, exc_info=exc)
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


def run_consumers(
    service: str,
    load: Callable[[], SS],
    *,
    group: str,
    subscriptions: Callable[[], list[Subscription]],
) -> None:
    """Run a service whose work is consuming streams: `run_service` around `consume`."""

    async def body(config: SS, stop: asyncio.Event) -> None:
        async with redis_clients(config, service) as clients:
            await consume(
                config,
                clients,
                group=group,
                consumer=config.consumer(service),
                subscriptions=subscriptions(),
                stop=stop,
                host=config.host,
                port=config.port,
            )

    run_service(service, load, body)


@dataclass(frozen=True)
class Subscription:
    """One stream a service reads: its messages' decoder and the handler (per message or per batch)."""

    stream: str
    decoder: msgspec.json.Decoder[Any]
    handle: MessageHandler[Any] | None = None
    handle_batch: BatchHandler[Any] | None = None
    waits_out_outages: bool = False
    """True when the handler waits a PostgreSQL/Redis outage out itself (so the failures it returns
    are final for this delivery): the consumer then never calls it again in place."""


async def consume(
    settings: CommonSettings,
    clients: RedisClients,
    *,
    group: str,
    consumer: str,
    subscriptions: list[Subscription],
    stop: asyncio.Event,
    host: str,
    port: int,
    ready: ReadyCheck | None = None,
) -> None:
    """Serve health/metrics, provision streams, and run one consumer per subscription until `stop`."""
    consumers = consumers_for(settings, clients, group=group, consumer=consumer, subscriptions=subscriptions)

    async def is_ready() -> bool:
        if not all(c.ready.is_set() for c in consumers) or stop.is_set():
            return False
        await clients.commands.ping()
        return await ready() if ready is not None else True

    async with health.serve(host, port, is_ready):
        await run_consumers_until(settings, clients, consumers, stop)


def consumers_for(
    settings: CommonSettings,
    clients: RedisClients,
    *,
    group: str,
    consumer: str,
    subscriptions: list[Subscription],
) -> list[Consumer[Any]]:
    """One consumer per subscription, configured from the settings."""
    return [
        Consumer.from_settings(
            settings,
            redis=clients.commands,
            reader=clients.reader,
            stream=sub.stream,
            group=group,
            consumer=consumer,
            decoder=sub.decoder,
            handle=sub.handle,
            handle_batch=sub.handle_batch,
            transient_retry_s=0 if sub.waits_out_outages else None,
        )
        for sub in subscriptions
    ]


async def run_consumers_until(
    settings: CommonSettings, clients: RedisClients, consumers: list[Consumer[Any]], stop: asyncio.Event
) -> None:
    """Provision the streams (waiting for Redis), then run `consumers` and the stream gauges until `stop`."""
    if not await _provision(clients.commands, settings.stream_partitions, stop):
        return
    async with asyncio.TaskGroup() as tasks:
        for c in consumers:
            tasks.create_task(c.run(stop))
        tasks.create_task(monitor.poll(clients.commands, [k for c in consumers for k in c.keys], stop))


async def _provision(redis: Redis, partitions: int, stop: asyncio.Event) -> bool:
    """Provision streams, waiting for Redis to come up (not ready meanwhile); False when stopped first."""
    backoff = 0.5
    while not stop.is_set():
        try:
            await provision(redis, partitions)
            return True
        except (RedisConnectionError, RedisTimeoutError) as exc:
            log.warning("Redis unreachable (%s); provisioning again in %.1fs", exc, backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                backoff = min(backoff * 2, 10.0)
    return False
