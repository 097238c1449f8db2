"""The streams runtime's errors, kept importable from here; they are defined in `pm_shared.errors`."""

from __future__ import annotations

from pm_shared.errors import BackPressureError, StreamMissingError

__all__ = ["BackPressureError", "StreamMissingError"]
