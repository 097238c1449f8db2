"""`python -m pm_adapter_qp.sandbox`: the QP sandbox under uvicorn, configured by `PM_QP_SANDBOX_*`."""

from __future__ import annotations

import logging

import uvicorn

from pm_adapter_qp.sandbox import settings
from pm_adapter_qp.sandbox.app import create_app


def run() -> None:
    config = settings.load()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per callback otherwise
    uvicorn.run(
        create_app(config),
        host=config.host,
        port=config.port,
        access_log=False,
        timeout_graceful_shutdown=1,
    )


run()
