"""`python -m pm_adapter_qp`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_adapter_qp.main import run

run()
