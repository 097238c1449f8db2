"""Wiring of pm-gateway: uvicorn serving the app, supervised, until SIGTERM; `run()` is the console script."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette

from pm_gateway import settings
from pm_gateway.app import create_app
from pm_shared import fleet, runtime

SERVICE = fleet.GATEWAY


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: SIGTERM belongs to the runtime's stop event."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def http_config(app: Starlette, host: str, port: int, **extra: Any) -> uvicorn.Config:
    """How the gateway is served, wherever it is (pm-gateway, the test kit, the bench's bare app)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # llhttp (httptools) refuses a header line ended by a bare LF and obsolete line folding (400),
        # which h11 accepts and rewrites: behind a proxy that reads them otherwise, either would let a
        # client smuggle a header or a request past it (RFC 9112 §2.2, §5.2).
        http="httptools",
        log_config=None,
        access_log=False,
        # The socket peer stays the client: uvicorn would otherwise believe X-Forwarded-For from any
        # local process, letting it pass a PSP callback allowlist (pm_gateway.sources decides instead).
        proxy_headers=False,
        **extra,
    )


async def main(config: settings.Settings, stop: asyncio.Event) -> None:
    failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def fail(exc: BaseException) -> None:
        if not failed.done():
            failed.set_exception(exc)

    app = create_app(config, on_background_failure=fail)
    server = _Server(
        http_config(app, config.host, config.port, timeout_graceful_shutdown=int(config.shutdown_grace_s))
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
