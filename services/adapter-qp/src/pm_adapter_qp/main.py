"""Wiring of pm-adapter-qp: its consumers, health endpoint and lifecycle; `run()` is the console script."""

from __future__ import annotations

from pm_adapter_qp import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_ADAPTER_QP

SERVICE = "adapter-qp"


def run() -> None:
    runtime.run_consumers(
        SERVICE, settings.load, group=GROUP_ADAPTER_QP, subscriptions=handlers.subscriptions
    )
