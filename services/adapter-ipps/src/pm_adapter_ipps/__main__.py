"""`python -m pm_adapter_ipps`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_adapter_ipps.main import run

run()
