"""Builds a period's reconciliation report from PostgreSQL (the SQL is in `queries`).

All sections are read in one snapshot: a REPEATABLE READ, READ ONLY transaction, unless the caller's
connection is already in a transaction, which is then used as it is (asyncpg cannot change the isolation
of a transaction already open).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg

from pm_shared.db import Conn
from pm_shared.reconciliation.reports import queries
from pm_shared.reconciliation.reports.model import (
    AlertCount,
    Failure,
    FxBought,
    OpenAlert,
    PspTotals,
    Report,
    Revenue,
    Volume,
)
from pm_shared.reconciliation.reports.period import Period

OLDEST_ALERTS = 50
"""How many unresolved alerts a report lists (the oldest); it counts them all."""


async def build(conn: Conn, period: Period, psp: Sequence[PspTotals] = ()) -> Report:
    """The report of `period`: settled volumes, revenue, FX bought and failures per currency from the
    intents' timelines, the caller's PSP totals as given, and the alerts unresolved right now."""
    if conn.is_in_transaction():
        return await _read(conn, period, psp)
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _read(conn, period, psp)


async def _read(conn: Conn, period: Period, psp: Sequence[PspTotals]) -> Report:
    bounds = (period.start, period.end)
    volumes = await conn.fetch(queries.VOLUMES, *bounds)
    revenue = await conn.fetch(queries.REVENUE, *bounds)
    bought = await conn.fetch(queries.FX_BOUGHT, *bounds)
    failures = await conn.fetch(queries.FAILURES, *bounds)
    counted = await conn.fetch(queries.ALERT_COUNTS)
    oldest = await conn.fetch(queries.OLDEST_ALERTS, OLDEST_ALERTS)
    return Report(
        period=period.label,
        start=period.start,
        end=period.end,
        generated_at=datetime.now(UTC),
        volumes=tuple(
            Volume(currency=r["currency"], intent_type=r["intent_type"], count=r["count"], amount=_sum(r))
            for r in volumes
        ),
        revenue=tuple(
            Revenue(
                currency=r["currency"],
                source=r["source"],
                intent_type=r["intent_type"],
                count=r["count"],
                amount=_sum(r),
            )
            for r in revenue
        ),
        fx_bought=tuple(
            FxBought(
                currency=r["currency"],
                sold_currency=r["sold_currency"],
                intent_type=r["intent_type"],
                count=r["count"],
                amount=_sum(r),
            )
            for r in bought
        ),
        failures=tuple(
            Failure(currency=r["currency"], failure_code=r["failure_code"], count=r["count"], amount=_sum(r))
            for r in failures
        ),
        psp=tuple(sorted(psp, key=lambda t: (t.currency, t.psp))),
        alert_counts=tuple(AlertCount(kind=r["kind"], status=r["status"], count=r["count"]) for r in counted),
        open_alerts=tuple(_alert(r) for r in oldest),
        open_alert_total=sum(r["count"] for r in counted),
    )


def _sum(row: asyncpg.Record) -> int:
    return exact_int(row["amount"])


def exact_int(value: object) -> int:
    """A sum of integers as PostgreSQL returns it (`numeric` → Decimal) as an int, refusing anything
    that is not a whole number rather than rounding it."""
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return int(value)
    raise ValueError(f"not a whole number of minor units: {value!r}")


def _alert(row: asyncpg.Record) -> OpenAlert:
    return OpenAlert(
        id=row["id"],
        kind=row["kind"],
        subject=row["subject"],
        intent_id=row["intent_id"],
        occurrences=row["occurrences"],
        status=row["status"],
        created_at=row["created_at"],
        last_seen_at=row["last_seen_at"],
    )
