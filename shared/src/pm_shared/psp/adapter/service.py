"""The process of a PSP adapter: a PostgreSQL pool, the job and hint consumers, the status sweep and
the health endpoint, supervised; the adapter brings its handlers (`Adapter`).

A job or hint handler that meets a PSP without an answer raises `calls.Unavailable` (a
`RetryLater`): the job is delivered again later. The sweep reads, every `sweep_interval_ms`, the
attempts whose outcome the PSP has not given yet; a pass that fails is logged and the next tries
again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import msgspec

from pm_shared import db, fleet, runtime
from pm_shared.db import Pool
from pm_shared.messages import PspHint, PspJob
from pm_shared.psp.adapter.results import Publish, publisher_of
from pm_shared.psp.adapter.settings import AdapterSettings
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.names import StreamSpec

A = TypeVar("A", bound=AdapterSettings)


class Handlers(Protocol):
    """An adapter's handlers of its two streams."""

    async def on_job(self, delivery: Delivery[PspJob]) -> None: ...

    async def on_hint(self, delivery: Delivery[PspHint]) -> None: ...


def subscriptions(jobs: StreamSpec, hints: StreamSpec, handlers: Handlers) -> list[Subscription]:
    """An adapter reads its jobs and its hints (the PSP's callbacks, verified by the gateway)."""
    return [
        Subscription(jobs.name, msgspec.json.Decoder(PspJob), handle=handlers.on_job),
        Subscription(hints.name, msgspec.json.Decoder(PspHint), handle=handlers.on_hint),
    ]


@dataclass(frozen=True)
class Deps:
    """What the process gives an adapter."""

    pool: Pool
    publish: Publish
    publisher: Publisher
    """The fleet's partitioned publisher, for what an adapter sends elsewhere than `pm:psp:results` (the
    IPPS adapter's refund intents, on `pm:intents`)."""


@dataclass(frozen=True)
class Adapter:
    """What an adapter gives the process."""

    subscriptions: list[Subscription]
    sweep: Callable[[], Awaitable[object]]
    """One pass of its status sweep."""


Open = Callable[[A, Deps], contextlib.AbstractAsyncContextManager[Adapter]]
"""Builds the adapter (its PSP client, its handlers) for the duration of the block."""


async def serve(member: fleet.Member, config: A, stop: asyncio.Event, open_adapter: Open[A]) -> None:
    """Run the adapter `open_adapter` builds as the process `member` until `stop`."""
    async with runtime.redis_clients(config, member.name) as clients, contextlib.AsyncExitStack() as stack:
        pool = await db.create_pool(config.database_url, min_size=1, max_size=config.pool_max_size)
        stack.push_async_callback(pool.close)
        publisher = Publisher.from_settings(clients.commands, config)
        deps = Deps(pool, publisher_of(publisher), publisher)
        adapter = await stack.enter_async_context(open_adapter(config, deps))
        async with runtime.supervise(stop) as tasks:
            sweep = runtime.every(config.sweep_interval_ms / 1000, stop, adapter.sweep, "status sweep")
            tasks.start("status sweep", sweep)
            tasks.start("consumers", runtime.consume(config, clients, member, adapter.subscriptions, stop))
