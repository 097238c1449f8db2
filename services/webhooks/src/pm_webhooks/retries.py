"""When a failed delivery is tried again: the schedule with jitter, and what `Retry-After` asks for."""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from email.utils import parsedate_to_datetime


def delay(
    schedule: Sequence[float], attempts: int, jitter: float, rng: random.Random | None = None
) -> float | None:
    """Seconds until the next attempt after `attempts` attempts (all failed), each delay drawn within
    ± `jitter` of the schedule's; None when the schedule is spent (the delivery has FAILED)."""
    if attempts < 1 or attempts > len(schedule):
        return None
    base = schedule[attempts - 1]
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, base * (1 + spread))


def retry_after(value: str | None, cap_s: float, now: float | None = None) -> float | None:
    """Seconds a `Retry-After` header asks to wait (delay-seconds or an HTTP date), at most `cap_s`;
    None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), cap_s)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    seconds = when.timestamp() - (time.time() if now is None else now)
    return min(max(seconds, 0.0), cap_s)
