"""`python -m pm_adapter_ipps.sandbox`: the sandbox under uvicorn, configured by `PM_IPPS_SANDBOX_*`."""

from __future__ import annotations

import logging

import uvicorn

from pm_adapter_ipps.sandbox import settings
from pm_adapter_ipps.sandbox.app import create_app


def run() -> None:
    loaded = settings.load()
    logging.basicConfig(level=loaded.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    uvicorn.run(
        create_app(loaded),
        host=loaded.host,
        port=loaded.port,
        log_level=loaded.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=1,  # a `timeout` fault holds a request for hang_s; do not wait for it
    )


run()
