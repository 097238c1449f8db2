"""Errors of the streams runtime that callers are expected to handle."""

from __future__ import annotations


class BackPressureError(Exception):
    """The downstream group is too far behind; try again after `retry_after_s`."""

    def __init__(self, stream: str, outstanding: int, threshold: int, retry_after_s: float) -> None:
        super().__init__(
            f"{stream}: {outstanding} entries outstanding (threshold {threshold}); "
            f"retry after {retry_after_s:g}s"
        )
        self.stream = stream
        self.outstanding = outstanding
        self.threshold = threshold
        self.retry_after_s = retry_after_s


class StreamMissingError(Exception):
    """The stream does not exist: never provisioned (`pm streams --provision`, `pm up`), or deleted."""

    def __init__(self, key: str) -> None:
        super().__init__(f"stream {key} does not exist; provision it first (pm streams --provision)")
        self.key = key
