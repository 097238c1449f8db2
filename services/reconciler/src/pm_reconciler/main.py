"""Wiring of pm-reconciler: its consumers, health endpoint and lifecycle; `run()` is the console script."""

from __future__ import annotations

from pm_reconciler import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_RECONCILER

SERVICE = "reconciler"


def run() -> None:
    runtime.run_consumers(
        SERVICE, settings.load, group=GROUP_RECONCILER, subscriptions=handlers.subscriptions
    )
