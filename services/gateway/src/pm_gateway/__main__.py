"""`python -m pm_gateway`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_gateway.main import run

run()
