"""`python -m pm_sandbox_auth`: the Auth Center sandbox under uvicorn until SIGTERM (`PM_AUTH_SANDBOX_*`)."""

from __future__ import annotations

import uvicorn

from pm_sandbox_auth import settings
from pm_sandbox_auth.app import create_app
from pm_shared import fleet, runtime

config = settings.load()
server = uvicorn.Server(
    uvicorn.Config(create_app(config), host=config.host, port=config.port, access_log=False)
)
runtime.serve_standalone(fleet.AUTH_SANDBOX, server)
