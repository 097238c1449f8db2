"""The sender's entry point (being built: docs/webhooks.md)."""

from __future__ import annotations


def run() -> None:
    raise SystemExit("pm-webhooks is not built yet")
