"""Fixtures of the gateway's tests: `gateway` (the API with real service keys, from `pm_tools.testing`)
and, for the PSP callbacks, the hints streams emptied (`clean`), the gateway as `pm-gateway` serves it
(`serve_gateway`, `gw`), its settings with the test callback secrets and what it passed on.

Test modules import no conftest (pytest runs with `--import-mode=importlib`): they name these fixtures
and annotate them with the `Callable` types given in each docstring.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_gateway.main import main
from pm_gateway.settings import Settings
from pm_shared.messages import PspHint
from pm_shared.settings import load_settings
from pm_shared.streams.names import IPPS_HINTS, QP_HINTS
from pm_shared.streams.provision import provision
from pm_tools.processes import free_port
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.gateway import delete_streams, gateway, gateway_env, key_encryption_key

__all__ = ["gateway", "gateway_env"]

IPPS_SECRET = "ipps-test-secret"
QP_SECRET = "qp-test-secret"
_hint = msgspec.json.Decoder(PspHint)


@pytest.fixture
async def clean(redis: Redis) -> AsyncIterator[Redis]:
    """The hints streams provisioned and empty, no dedupe marks; the same left behind."""

    async def wipe() -> None:
        await delete_streams(redis, IPPS_HINTS.name, QP_HINTS.name)
        marks = [k async for k in redis.scan_iter(match="pm:webhooks:seen:*")]
        if marks:
            await redis.delete(*marks)

    await wipe()
    await provision(redis, 1, [IPPS_HINTS, QP_HINTS])
    yield redis
    await wipe()


@pytest.fixture
def webhook_settings(redis_url: str, database_url: str) -> Callable[..., Settings]:
    """`Callable[..., Settings]`: the gateway's settings on the test Redis and PostgreSQL with the test
    callback secrets (`ipps-test-secret`, `qp-test-secret`); keyword arguments add variables by name
    (`PM_…`), the database's and Redis's included."""

    def make(**env: str) -> Settings:
        return load_settings(
            Settings,
            "GATEWAY_",
            {
                "PM_REDIS_URL": redis_url,
                "PM_DATABASE_URL": database_url,
                "PM_KEY_ENCRYPTION_KEY": key_encryption_key(),
                "PM_GATEWAY_IPPS_CALLBACK_SECRET": IPPS_SECRET,
                "PM_GATEWAY_QP_CALLBACK_SECRET": QP_SECRET,
                **env,
            },
        )

    return make


@contextlib.asynccontextmanager
async def _serve(settings: Settings) -> AsyncIterator[str]:
    settings = msgspec.structs.replace(settings, host="127.0.0.1", port=free_port())
    stop = asyncio.Event()
    serving = asyncio.create_task(main(settings, stop))
    url = f"http://127.0.0.1:{settings.port}"

    async def listening() -> bool:
        if serving.done():
            serving.result()
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(listening, what="the gateway answers /healthz")
        yield url
    finally:
        stop.set()
        await serving


@pytest.fixture
def serve_gateway() -> Callable[[Settings], AbstractAsyncContextManager[str]]:
    """`Callable[[Settings], AbstractAsyncContextManager[str]]`: the gateway as `pm-gateway` serves it
    (`pm_gateway.main`) with these settings, on a free port in this event loop; yields its URL."""
    return _serve


@pytest.fixture
async def gw(clean: Redis, webhook_settings: Callable[..., Settings]) -> AsyncIterator[str]:
    """The URL of a gateway on `webhook_settings()`, the hints streams clean."""
    async with _serve(webhook_settings()) as url:
        yield url


async def _read_hints(redis: Redis, key: str) -> list[PspHint]:
    entries: Any = await redis.xrange(key)
    return [_hint.decode(fields[b"m"]) for _, fields in entries]


@pytest.fixture
def read_hints() -> Callable[[Redis, str], Awaitable[list[PspHint]]]:
    """`Callable[[Redis, str], Awaitable[list[PspHint]]]`: the hints in a stream partition (its key),
    oldest first."""
    return _read_hints
