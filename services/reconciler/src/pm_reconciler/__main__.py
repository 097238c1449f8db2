"""`python -m pm_reconciler`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_reconciler.main import run

run()
