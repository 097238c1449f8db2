"""The gateway's background tasks (the events follower, the outbox marks) are supervised: one that
dies ends the process instead of leaving a gateway whose `Prefer: wait` never answers."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from pm_gateway.app import create_app
from pm_gateway.events import EventWaiters
from pm_gateway.main import main
from pm_gateway.settings import Settings
from pm_shared.settings import load_settings
from pm_tools.processes import free_port
from pm_tools.testing.gateway import key_encryption_key


def settings(database_url: str, redis_url: str) -> Settings:
    return load_settings(
        Settings,
        "GATEWAY_",
        {
            "PM_REDIS_URL": redis_url,
            "PM_DATABASE_URL": database_url,
            "PM_KEY_ENCRYPTION_KEY": key_encryption_key(),
            "PM_GATEWAY_PORT": str(free_port()),
        },
    )


def leaves(group: BaseException) -> list[BaseException]:
    if isinstance(group, BaseExceptionGroup):
        return [leaf for exc in group.exceptions for leaf in leaves(exc)]
    return [group]


async def test_an_events_follower_that_dies_ends_the_gateway_with_its_error(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: EventWaiters, stop: asyncio.Event) -> None:
        raise RuntimeError("the follower broke")

    monkeypatch.setattr(EventWaiters, "run", broken)
    stop = asyncio.Event()
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.wait_for(main(settings(database_url, redis_url), stop), 20)
    errors = leaves(caught.value)
    assert [str(e) for e in errors] == ["the follower broke"], errors
    assert "(in the gateway's task 'events follower')" in errors[0].__notes__
    assert stop.is_set()  # the other tasks were asked to finish what they held


async def test_an_events_follower_that_returns_early_ends_the_gateway_too(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def quits(self: EventWaiters, stop: asyncio.Event) -> None:
        return None

    monkeypatch.setattr(EventWaiters, "run", quits)
    with pytest.raises(BaseExceptionGroup) as caught:
        await asyncio.wait_for(main(settings(database_url, redis_url), asyncio.Event()), 20)
    assert [str(e) for e in leaves(caught.value)] == [
        "events follower ended while the gateway was not stopping"
    ]


async def test_a_stop_request_ends_the_gateway_cleanly(database_url: str, redis_url: str) -> None:
    config = settings(database_url, redis_url)
    stop = asyncio.Event()
    running = asyncio.create_task(main(config, stop))
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            try:
                if (await http.get(f"http://127.0.0.1:{config.port}/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert not running.done(), running
            await asyncio.sleep(0.05)
    stop.set()
    await asyncio.wait_for(running, 20)
    assert running.done() and running.exception() is None


async def test_without_a_handler_a_dying_task_is_logged_as_critical(
    database_url: str, redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(self: EventWaiters, stop: asyncio.Event) -> None:
        raise RuntimeError("the follower broke")

    monkeypatch.setattr(EventWaiters, "run", broken)
    app = create_app(settings(database_url, redis_url))
    with caplog.at_level(logging.CRITICAL, logger="pm_gateway.app"):
        async with app.router.lifespan_context(app):
            await asyncio.sleep(0.2)
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert [r.getMessage() for r in critical] == ["the gateway's events follower failed"]
    assert critical[0].exc_info is not None
