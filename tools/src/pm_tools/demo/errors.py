"""Why `pm demo` could not run (as opposed to running and finding problems)."""

from __future__ import annotations


class DemoError(Exception):
    """The demo could not run (as opposed to running and finding problems); `exit_code` says why."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class GatewayUnavailableError(DemoError):
    """Nothing answers at the gateway's URL (exit 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 2)
