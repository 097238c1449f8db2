"""Wiring of pm-gateway: uvicorn serving the app, supervised, until SIGTERM; `run()` is the console script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import uvicorn

from pm_gateway import settings
from pm_gateway.app import create_app
from pm_shared import fleet, runtime

SERVICE = fleet.GATEWAY


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM belongs to the runtime's stop event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(exc: BaseException) -> None:
        if not failed.done():
            failed.set_exception(exc)

    server = _Server(
        uvicorn.Config(
            create_app(config, on_background_failure=fail),
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            # The socket peer stays the client: uvicorn would otherwise believe X-Forwarded-For from any
            # local process, letting it pass a PSP callback allowlist (pm_gateway.sources decides instead).
            proxy_headers=False,
            timeout_graceful_shutdown=int(config.shutdown_grace_s),
        )
    )
    async with runtime.supervise(stop) as tasks:
        tasks.start("http", runtime.serve_http(server, stop, f"{config.host}:{config.port}"))
        tasks.start("background", _until_failure(failed, stop))


async def _until_failure(failed: asyncio.Future[None], stop: asyncio.Event) -> None:
    """Raise what a background task of the app died of (see `app._background`); return on `stop`."""
    stopping: asyncio.Future[None] = asyncio.ensure_future(_wait(stop))
    try:
        await asyncio.wait([failed, stopping], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
    if failed.done():
        failed.result()


async def _wait(event: asyncio.Event) -> None:
    await event.wait()


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
