"""`python -m pm_ledger_writer`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_ledger_writer.main import run

run()
