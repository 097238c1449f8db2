"""`python -m pm_orchestrator`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_orchestrator.main import run

run()
