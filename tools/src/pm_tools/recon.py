"""What `pm recon` does (docs/reconciliation.md): read and move alerts, ask the reconciler for a sweep,
propose and apply repairs, write reports. Straight on PostgreSQL, the ledger and Redis, like the other
operator tools; the printing is `pm_tools.cli.recon_cmd`'s."""

from __future__ import annotations

import asyncio
import getpass
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pm_shared import db
from pm_shared.ledger import open_ledger
from pm_shared.ledger.api import Ledger
from pm_shared.reconciliation import alerts, kinds, queries, rechecks, repairs, reports, requests, settlement
from pm_shared.reconciliation.alerts import Alert
from pm_shared.settings import CommonSettings
from pm_shared.streams import Publisher
from pm_shared.streams.connection import connect
from pm_tools.database import connection

APPLICATION = "pm recon"


def actor() -> str:
    return f"{APPLICATION} ({getpass.getuser()})"


@dataclass(frozen=True)
class Shown:
    alert: Alert
    history: list[dict[str, object]]
    repair: repairs.Proposal | None


async def listing(url: str, statuses: Sequence[str], kind: str | None, limit: int) -> list[Alert]:
    async with connection(url, APPLICATION) as conn:
        return await alerts.listing(conn, statuses=statuses, kind=kind, limit=limit)


async def show(url: str, alert_id: int) -> Shown:
    async with connection(url, APPLICATION) as conn:
        alert = await alerts.get(conn, alert_id)
        row = await conn.fetchrow(queries.SELECT_REPAIR, alert_id)
        return Shown(alert, await alerts.history(conn, alert_id), repairs.proposal_of(row) if row else None)


async def acknowledge(url: str, alert_id: int, note: str | None) -> Alert:
    async with connection(url, APPLICATION) as conn:
        return await alerts.acknowledge(conn, alert_id, actor(), note)


async def resolve(url: str, alert_id: int, note: str | None) -> Alert:
    async with connection(url, APPLICATION) as conn:
        return await alerts.resolve(conn, alert_id, actor(), note)


async def runs(url: str, sweep: str | None, limit: int) -> list[dict[str, Any]]:
    async with connection(url, APPLICATION) as conn:
        return [dict(r) for r in await conn.fetch(queries.SELECT_RUNS, sweep, limit)]


async def run_sweep(
    config: CommonSettings, asked: requests.RunRequest, wait_s: float
) -> dict[str, Any] | None:
    """Put the request on the reconciler's list, then wait up to `wait_s` for its run to be done (None:
    not done yet — the reconciler may not be running; the request waits for it)."""
    redis = connect(config.redis_url, name="pm-recon")
    try:
        await requests.enqueue(redis, asked)
    finally:
        await redis.aclose()
    deadline = time.monotonic() + wait_s
    async with connection(config.database_url, APPLICATION) as conn:
        while True:
            row = await conn.fetchrow(queries.SELECT_RUN, asked.sweep, asked.period)
            if row is not None and row["status"] == "DONE":
                return dict(row)
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.2)


def _ledger_url(config: CommonSettings) -> str:
    return config.ledger_url or "embedded+" + config.database_url


@asynccontextmanager
async def _ledger(config: CommonSettings) -> AsyncIterator[Ledger]:
    ledger = await open_ledger(_ledger_url(config), readonly=True)
    try:
        yield ledger
    finally:
        await ledger.close()


async def propose(config: CommonSettings, alert_id: int) -> repairs.Proposal:
    async with _ledger(config) as ledger, connection(config.database_url, APPLICATION) as conn:
        return await repairs.propose(conn, ledger, alert_id)


async def apply(config: CommonSettings, alert_id: int, wait_s: float) -> tuple[repairs.Proposal, Alert]:
    """Apply the proposed repair through the ledger-writer, then check the alert's subject again;
    the repair and the alert as it is then."""
    redis = connect(config.redis_url, name="pm-recon")
    pool = await db.create_pool(config.database_url, max_size=2, application_name=APPLICATION)
    try:
        async with _ledger(config) as ledger:
            publisher = Publisher(redis, partitions=config.stream_partitions, maxlen=config.stream_maxlen)
            async with pool.acquire() as conn:
                applied = await repairs.apply(conn, ledger, publisher, alert_id, actor(), wait_s)
                alert = await alerts.get(conn, alert_id)
            if alert.kind in kinds.INTENT_KINDS:
                await rechecks.intents(pool, ledger)
            elif alert.kind == kinds.ORPHAN_TRANSFER:
                await rechecks.orphan_transfers(pool, ledger)
            async with pool.acquire() as conn:
                return applied, await alerts.get(conn, alert_id)
    finally:
        await pool.close()
        await redis.aclose()


async def report(url: str, wanted: str, out: Path) -> list[Path]:
    """Build the report of a day or ISO week and write its CSV and HTML into `out`."""
    chosen = reports.Period.parse(wanted)
    async with connection(url, APPLICATION) as conn:
        psp = await settlement.psp_totals(conn, chosen.first_day, chosen.last_day)
        built = await reports.build(conn, chosen, psp)
    return reports.write(built, out)
