"""Circuit breakers, one per endpoint (in this replica): after `failures` failed attempts in a row the
endpoint's breaker opens for `cooldown_s`; its deliveries are then put off to the cool-down's end
without an attempt being spent on them. The first attempt after it is a trial: a success closes the
breaker, a failure opens it again at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _State:
    failures: int = 0
    open_until: float = 0.0
    """`time.time()` until which the breaker is open."""


class Breakers:
    def __init__(self, failures: int, cooldown_s: float) -> None:
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._states: dict[str, _State] = {}

    def open_until(self, endpoint_id: str, now: float | None = None) -> float | None:
        """When the endpoint's open breaker closes; None when it is closed."""
        state = self._states.get(endpoint_id)
        if state is None or state.open_until <= (time.time() if now is None else now):
            return None
        return state.open_until

    def open_endpoints(self) -> list[str]:
        now = time.time()
        return [e for e, s in self._states.items() if s.open_until > now]

    def succeeded(self, endpoint_id: str) -> None:
        self._states.pop(endpoint_id, None)

    def failed(self, endpoint_id: str, now: float | None = None) -> float | None:
        """Count a failure; when it opens the breaker, until when (else None)."""
        state = self._states.setdefault(endpoint_id, _State())
        state.failures += 1
        if state.failures < self.failures:
            return None
        state.open_until = (time.time() if now is None else now) + self.cooldown_s
        return state.open_until
