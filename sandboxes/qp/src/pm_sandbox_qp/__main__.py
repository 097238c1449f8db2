"""`python -m pm_sandbox_qp`: the QP sandbox under uvicorn until SIGTERM, configured by `PM_QP_SANDBOX_*`."""

from __future__ import annotations

import uvicorn

from pm_sandbox_qp import settings
from pm_sandbox_qp.app import create_app
from pm_shared import fleet, runtime

config = settings.load()
# A `timeout` fault holds its request for hang_ms: a stop does not wait for it.
server = uvicorn.Server(
    uvicorn.Config(
        create_app(config), host=config.host, port=config.port, access_log=False, timeout_graceful_shutdown=1
    )
)
runtime.serve_standalone(fleet.QP_SANDBOX, server)
