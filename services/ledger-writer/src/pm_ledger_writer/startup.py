"""What the ledger-writer does before it writes: open the ledger (waiting while its database is
unreachable), and, on becoming the active writer, open the operator accounts and verify the chart."""

from __future__ import annotations

import asyncio
import logging

from pm_ledger_writer.settings import Settings
from pm_shared import db
from pm_shared.ledger import Ledger, accounts, chart, open_ledger
from pm_shared.ledger.urls import EmbeddedUrl, parse

log = logging.getLogger(__name__)


class ChartOfAccountsError(RuntimeError):
    """Mapped accounts disagree with the ledger: the writer refuses to move money until that is fixed."""


async def prepare_accounts(config: Settings, ledger: Ledger) -> None:
    """As the new active writer: open the operator accounts on every ledger, then verify every mapped
    account (exists, with the expected ledger, code and flags) — the same check as `pm ledger verify`."""
    conn = await db.connect(config.database_url)
    try:
        await accounts.open_operator_accounts(ledger, conn)
        problems = await accounts.verify(ledger, conn, operator_currencies=chart.LEDGERS)
    finally:
        await conn.close()
    for problem in problems:
        log.error("account check: %s %s", problem.kind, problem.detail)
    if problems:
        raise ChartOfAccountsError(f"{len(problems)} account problem(s); see `pm ledger verify`")
    log.info("operator accounts open on %s; every mapped account verified", ", ".join(chart.LEDGERS))


async def open_ledger_when_reachable(config: Settings, stop: asyncio.Event) -> Ledger | None:
    """Open the ledger, waiting (not ready) while its database is unreachable; None when stopped first."""
    url = config.ledger()
    target = parse(url)
    backoff = 0.5
    while not stop.is_set():
        try:
            if isinstance(target, EmbeddedUrl) and config.migrate_on_start:
                # The writer is the embedded engine's only writer, so it brings schema `ledger` up to date.
                await db.ensure_database(target.dsn)
                applied = await db.migrate(target.dsn)
                if applied:
                    log.info("applied migrations %s", [m.version for m in applied])
            ledger = await open_ledger(url)
            log.info("ledger open: %s", url.partition("://")[0])
            return ledger
        except Exception as exc:
            log.warning("ledger unavailable (%r); trying again in %.1fs", exc, backoff)
            try:
                await asyncio.wait_for(stop.wait(), backoff)
            except TimeoutError:
                backoff = min(backoff * 2, 10.0)
    return None
