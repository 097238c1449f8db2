"""`python -m pm_sandbox_ipps`: the IPPS sandbox under uvicorn until SIGTERM, configured by
`PM_IPPS_SANDBOX_*`."""

from __future__ import annotations

import uvicorn

from pm_sandbox_ipps import settings
from pm_sandbox_ipps.app import create_app
from pm_shared import fleet, runtime

config = settings.load()
# A `timeout` fault holds its request for hang_s: a stop does not wait for it.
server = uvicorn.Server(
    uvicorn.Config(
        create_app(config),
        host=config.host,
        port=config.port,
        log_level=config.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=1,
    )
)
runtime.serve_standalone(fleet.IPPS_SANDBOX, server, config.log_level)
