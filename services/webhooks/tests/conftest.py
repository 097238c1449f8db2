"""Fixtures of pm-webhooks's tests: the sender running in this process against the session's PostgreSQL
and the test Redis database (`start_sender`), merchants and endpoints (`pm_tools.testing.webhooks`),
and publishing state changes on `pm:events`.

Test modules import no conftest (pytest runs with `--import-mode=importlib`): they name these fixtures
and annotate them with the types given in each docstring.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import pytest
from redis.asyncio import Redis

from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.messages import IntentStateChanged
from pm_shared.streams import Publisher
from pm_shared.streams.names import EVENTS
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import KEY_ENCRYPTION_KEY, delete_streams
from pm_webhooks import main, settings

FAST_SCHEDULE = "0.2,0.2,0.2,0.2"
"""Four retries 0.2 s apart (±20 %): five attempts in about a second."""


@dataclass
class Running:
    """A sender started by `start_sender`."""

    config: settings.Settings
    stop: asyncio.Event
    task: asyncio.Task[None]

    async def halt(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


StartSender = Callable[..., Awaitable[Running]]
Publish = Callable[[IntentStateChanged], Awaitable[None]]


def sender_environment(database_url: str, redis_url: str, **overrides: str) -> dict[str, str]:
    """The sender's variables for tests: loopback allowed, sub-second retries; `overrides` are
    `PM_WEBHOOKS_*` fields by lower-case name (`allowed_networks=""`)."""
    env = {
        "PM_DATABASE_URL": database_url,
        "PM_REDIS_URL": redis_url,
        "PM_KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
        "PM_CONSUMER_NAME": f"webhooks-test-{uuid.uuid4().hex[:8]}",
        "PM_STREAM_BLOCK_MS": "100",
        "PM_WEBHOOKS_PORT": str(processes.free_port()),
        "PM_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "PM_WEBHOOKS_RETRY_SCHEDULE_S": FAST_SCHEDULE,
        "PM_WEBHOOKS_REQUEST_TIMEOUT_S": "5",
        "PM_WEBHOOKS_CLAIM_MARGIN_S": "1",
        "PM_WEBHOOKS_POLL_INTERVAL_S": "0.1",
        "PM_WEBHOOKS_BREAKER_FAILURES": "50",
    }
    env.update({f"PM_WEBHOOKS_{k.upper()}": v for k, v in overrides.items()})
    return env


@pytest.fixture
def cipher() -> Cipher:
    """The cipher the senders decrypt endpoint secrets with (the fleet's test key)."""
    return Cipher.from_setting(KEY_ENCRYPTION_KEY)


@pytest.fixture
async def start_sender(database_url: str, redis_url: str, redis: Redis) -> AsyncIterator[StartSender]:
    """`await start_sender(**overrides) -> Running`: a sender in this process, ready (its /readyz
    answers 200); every one is stopped after the test. `pm:events` starts empty."""
    await delete_streams(redis, EVENTS.name)
    started: list[Running] = []

    async def start(**overrides: str) -> Running:
        config = settings.load(sender_environment(database_url, redis_url, **overrides))
        stop = asyncio.Event()
        running = Running(config, stop, asyncio.create_task(main.main(config, stop)))
        started.append(running)
        async with httpx.AsyncClient() as client:

            async def ready() -> bool:
                if running.task.done():
                    running.task.result()
                try:
                    reply = await client.get(f"http://{config.host}:{config.port}/readyz")
                except httpx.TransportError:
                    return False
                return reply.status_code == 200

            await eventually(ready, timeout=15, what="the sender is ready")
        return running

    yield start
    for running in started:
        if not running.task.done():
            await running.halt()


@pytest.fixture
async def publish(redis: Redis) -> Publish:
    """`await publish(change)`: put a state change on `pm:events` (a sender provisioned it)."""
    publisher = Publisher(redis)

    async def send(change: IntentStateChanged) -> None:
        await publisher.publish(EVENTS, change)

    return send


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[db.Pool]:
    """A pool on the session database, for the tests' own inserts and reads."""
    created = await db.create_pool(database_url, min_size=1, max_size=4)
    yield created
    await created.close()
