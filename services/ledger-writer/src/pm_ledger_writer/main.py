"""Wiring of pm-ledger-writer: its consumers, health endpoint and lifecycle; `run()` is the console script."""

from __future__ import annotations

from pm_ledger_writer import handlers, settings
from pm_shared import runtime
from pm_shared.streams.names import GROUP_LEDGER_WRITER

SERVICE = "ledger-writer"


def run() -> None:
    runtime.run_consumers(
        SERVICE, settings.load, group=GROUP_LEDGER_WRITER, subscriptions=handlers.subscriptions
    )
