"""Wiring of pm-adapter-ipps: its consumers, health endpoint and lifecycle; `run()` is the console script."""

from __future__ import annotations

from pm_adapter_ipps import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_ADAPTER_IPPS

SERVICE = "adapter-ipps"


def run() -> None:
    runtime.run_consumers(
        SERVICE, settings.load, group=GROUP_ADAPTER_IPPS, subscriptions=handlers.subscriptions
    )
