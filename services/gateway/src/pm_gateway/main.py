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
    server = _Server(
        uvicorn.Config(
            create_app(config),
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


def run() -> None:
    runtime.run_service(SERVICE.name, settings.load, main)
