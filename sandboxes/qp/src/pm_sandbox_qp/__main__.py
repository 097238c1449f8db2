"""`python -m pm_sandbox_qp`: the QP sandbox under uvicorn, configured by `PM_QP_SANDBOX_*`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

import uvicorn

from pm_sandbox_qp import settings
from pm_sandbox_qp.app import create_app


class _Server(uvicorn.Server):
    """uvicorn that stops on SIGTERM/SIGINT and exits 0: it does not re-raise the signal after a clean
    shutdown, which made `pm up` report every stop of a sandbox as exit code -15."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.handle_exit, sig, None)
        yield


def run() -> None:
    config = settings.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    server = _Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
    )
    asyncio.run(server.serve())


run()
