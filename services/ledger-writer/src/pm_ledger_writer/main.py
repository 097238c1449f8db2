"""Wiring of pm-ledger-writer: ledger, lease, consumer and health endpoint; `run()` is the console script.

The process loops: wait as a standby until the lease is ours, then consume `pm:ledger:commands`
until SIGTERM or until the lease is lost, then (if not stopping) wait again. The health endpoint
stays up throughout; `/readyz` is ready only while this process is the active writer and its
consumer reads new entries.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from prometheus_client import Gauge
from redis.exceptions import RedisError

from pm_ledger_writer import handlers, liquidity, startup
from pm_ledger_writer.lease import Lease
from pm_ledger_writer.settings import Settings, load
from pm_ledger_writer.writer import Writer
from pm_shared import fleet, health, runtime
from pm_shared.runtime import RedisClients
from pm_shared.streams import Consumer, Publisher

log = logging.getLogger(__name__)

ACTIVE = Gauge(
    "pm_ledger_writer_active",
    "1 while this process holds the writer lease and writes the ledger; 0 while it waits as a standby.",
)

SERVICE = fleet.LEDGER_WRITER


async def main(config: Settings, stop: asyncio.Event) -> None:
    async with runtime.redis_clients(config, SERVICE.name) as clients:
        lease = Lease(clients.commands, config.lease_key, config.lease_ms)
        active: list[Consumer[Any]] = []

        async def is_ready() -> bool:
            # Ready = the active writer, reading new commands; a standby is alive (healthz) but not ready.
            if stop.is_set() or not lease.held or not active or not all(c.ready.is_set() for c in active):
                return False
            await clients.commands.ping()
            return True

        async with health.serve(config.host, config.port, is_ready):
            ledger = await startup.open_ledger_when_reachable(config, stop)
            if ledger is None:
                return
            try:
                publisher = Publisher.from_settings(clients.commands, config)
                writer = Writer(ledger, publisher, is_active=lambda: lease.held, stop=stop)
                while await lease.acquire(stop):
                    await startup.prepare_accounts(config, ledger)
                    await _write_while_held(config, clients, writer, lease, stop, active)
            finally:
                await ledger.close()


async def _write_while_held(
    config: Settings,
    clients: RedisClients,
    writer: Writer,
    lease: Lease,
    stop: asyncio.Event,
    active: list[Consumer[Any]],
) -> None:
    """Consume until SIGTERM (release the lease for the standby) or until the lease is lost."""
    halt = asyncio.Event()  # set by SIGTERM or by a lost lease: either way, stop consuming now
    group = SERVICE.group
    assert group is not None
    consumers = runtime.consumers_for(
        config,
        clients,
        group=group,
        consumer=config.consumer(SERVICE.name),
        subscriptions=handlers.subscriptions(writer),
    )
    active[:] = consumers
    ACTIVE.set(1)
    try:
        async with runtime.supervise(halt) as tasks:
            tasks.start("lease keeper", lease.keep(halt), helper=True)
            tasks.start("stop relay", _set_when(stop, halt), helper=True)
            thresholds = liquidity.parse_thresholds(config.fx_liquidity_low)
            watching = liquidity.watch(writer.ledger, thresholds, config.fx_liquidity_interval_s, halt)
            tasks.start("fx liquidity", watching, helper=True)
            tasks.start("consumers", runtime.run_consumers_until(config, clients, consumers, halt))
    finally:
        active.clear()
        ACTIVE.set(0)
        if lease.held:
            # Stopping (or crashing) with the batch in hand finished and acked: hand over at once.
            try:
                await lease.release()
                log.info("lease %s released", lease.key)
            except RedisError as exc:
                log.warning(
                    "lease %s not released (%s); it expires in %d ms", lease.key, exc, config.lease_ms
                )
    if not stop.is_set():
        log.warning("no longer the active writer; waiting as a standby")


async def _set_when(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


def run() -> None:
    runtime.run_service(SERVICE.name, load, main)
