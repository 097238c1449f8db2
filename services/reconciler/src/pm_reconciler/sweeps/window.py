"""The time window a sweep covers: [start, end) in UTC, named by its start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime

    @property
    def key(self) -> str:
        """The run's period in `pm.reconciliation_run`: e.g. `2026-12-07T11:00:00Z/3600`."""
        return f"{self.start.strftime('%Y-%m-%dT%H:%M:%SZ')}/{int((self.end - self.start).total_seconds())}"

    @property
    def day(self) -> str:
        """The UTC day it starts on: the period of the alerts it raises, when they are per day."""
        return self.start.date().isoformat()

    def ns(self) -> tuple[int, int]:
        """[start, end) in ledger time (ns since the epoch)."""
        return _ns(self.start), _ns(self.end)

    @classmethod
    def from_key(cls, key: str) -> Window:
        """The window of a run's period (`key`, or an on-demand run's `key@request`)."""
        start, _, rest = key.partition("/")
        width = int(rest.partition("@")[0])
        at = datetime.strptime(start, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
        return cls(at, at + timedelta(seconds=width))

    @classmethod
    def of_day(cls, day: str) -> Window:
        start = datetime.fromisoformat(day).replace(tzinfo=UTC)
        return cls(start, start + timedelta(days=1))

    @classmethod
    def slots(cls, now: datetime, width_s: int, delay_s: float, count: int) -> list[Window]:
        """The last `count` windows of `width_s` that ended at least `delay_s` before `now`, oldest first."""
        ready = now - timedelta(seconds=delay_s)
        epoch = int(ready.timestamp()) // width_s * width_s
        ends = [epoch - i * width_s for i in range(count)]
        return [
            cls(datetime.fromtimestamp(e - width_s, UTC), datetime.fromtimestamp(e, UTC))
            for e in reversed(ends)
        ]


def _ns(at: datetime) -> int:
    return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1_000
