"""`python -m pm_webhooks`: runs the service until SIGTERM (see `main`)."""

from __future__ import annotations

from pm_webhooks.main import run

run()
