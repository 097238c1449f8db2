"""PM's tools: what only an operator or a developer runs (the `pm` CLI, bench, chaos, demo, test kit)."""

from __future__ import annotations
