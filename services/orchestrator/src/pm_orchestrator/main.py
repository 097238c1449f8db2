"""Wiring of pm-orchestrator: its consumers, health endpoint and lifecycle; `run()` is the console script."""

from __future__ import annotations

from pm_orchestrator import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_ORCHESTRATOR

SERVICE = "orchestrator"


def run() -> None:
    runtime.run_consumers(
        SERVICE, settings.load, group=GROUP_ORCHESTRATOR, subscriptions=handlers.subscriptions
    )
