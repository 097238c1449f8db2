"""A report's period: one UTC day (`2026-12-07`) or one ISO 8601 week (`2026-W49`, Monday to Sunday),
with its half-open bounds [start, end) in UTC.

Parsing is strict: exactly `YYYY-MM-DD` or `YYYY-Www` (capital W, two-digit week, ASCII digits), a
real date, a week the year has (01 to 52, or 53 in a year that has one). `date.fromisoformat` alone
would also take `20261207` and `2026-W49-1`, and a file name or URL built from a period must have one
spelling only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

PeriodKind = Literal["day", "week"]

_DAY = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})")
_WEEK = re.compile(r"([0-9]{4})-W([0-9]{2})")
_DAYS: dict[PeriodKind, int] = {"day": 1, "week": 7}


class PeriodError(ValueError):
    """A period that is not `YYYY-MM-DD` or `YYYY-Www`, or names no real day or week."""


@dataclass(frozen=True, slots=True)
class Period:
    """A UTC day or an ISO week. Make one with `parse`, `day` or `week`; `str()` is its canonical label."""

    kind: PeriodKind
    first_day: date
    """The day itself, or the week's Monday."""

    @classmethod
    def parse(cls, text: str) -> Period:
        """`2026-12-07` (a UTC day) or `2026-W49` (an ISO week); anything else raises PeriodError."""
        if day := _DAY.fullmatch(text):
            try:
                first = date(int(day[1]), int(day[2]), int(day[3]))
            except ValueError as exc:
                raise PeriodError(f"{text!r} is not a real day ({exc})") from None
            return cls.day(first)
        if week := _WEEK.fullmatch(text):
            return cls.week(int(week[1]), int(week[2]))
        raise PeriodError(f"{text!r} is not a period: expected a UTC day YYYY-MM-DD or an ISO week YYYY-Www")

    def __post_init__(self) -> None:
        # A datetime is a date too, but which UTC day it means is the caller's choice to make.
        if isinstance(self.first_day, datetime) or not isinstance(self.first_day, date):
            raise TypeError(f"a period's first day is a date, not {type(self.first_day).__name__}")
        if self.kind == "week" and self.first_day.isoweekday() != 1:
            raise PeriodError(f"an ISO week starts on a Monday, not on {self.first_day.isoformat()}")
        _end_of(self.first_day, days=_DAYS[self.kind])

    @classmethod
    def day(cls, day: date) -> Period:
        """The UTC day `day`."""
        return cls("day", day)

    @classmethod
    def week(cls, year: int, week: int) -> Period:
        """ISO week `week` of ISO year `year` (weeks 1 to 52, or 53 in a year that has one)."""
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise PeriodError(
                f"{year:04d}-W{week:02d} is not an ISO week: {year} has no week {week}"
            ) from None
        return cls("week", monday)

    @classmethod
    def week_of(cls, day: date) -> Period:
        """The ISO week `day` falls in (which may belong to the next or previous ISO year)."""
        iso = day.isocalendar()
        return cls.week(iso.year, iso.week)

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=_DAYS[self.kind] - 1)

    @property
    def start(self) -> datetime:
        """The first instant of the period (UTC, inclusive)."""
        return datetime.combine(self.first_day, time(), UTC)

    @property
    def end(self) -> datetime:
        """The first instant after the period (UTC, exclusive)."""
        return datetime.combine(_end_of(self.first_day, days=_DAYS[self.kind]), time(), UTC)

    @property
    def label(self) -> str:
        if self.kind == "day":
            return self.first_day.isoformat()
        iso = self.first_day.isocalendar()
        return f"{iso.year:04d}-W{iso.week:02d}"

    def __str__(self) -> str:
        return self.label


def _end_of(first_day: date, *, days: int) -> date:
    """The day after a period of `days` days from `first_day`; PeriodError when past year 9999."""
    try:
        return first_day + timedelta(days=days)
    except OverflowError:
        raise PeriodError(f"a period starting {first_day.isoformat()} ends after year 9999") from None
