"""What the writer does on becoming active: open the operator accounts, verify the chart, refuse if wrong."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import tigerbeetle as tb

from pm_ledger_writer.settings import Settings
from pm_ledger_writer.startup import ChartOfAccountsError, prepare_accounts
from pm_shared.db import connect, drop_database, ensure_database, migrate
from pm_shared.ledger import Ledger, accounts, chart, open_ledger
from pm_tools.testing.db import new_database_url


@pytest_asyncio.fixture
async def fresh() -> AsyncIterator[tuple[str, Ledger]]:
    url = new_database_url()
    await ensure_database(url)
    try:
        await migrate(url)
        ledger = await open_ledger("embedded+" + url)
        try:
            yield url, ledger
        finally:
            await ledger.close()
    finally:
        await drop_database(url, force=True)


async def test_operator_accounts_are_opened_on_every_ledger_and_verified(fresh: tuple[str, Ledger]) -> None:
    url, ledger = fresh
    config = Settings(database_url=url)
    await prepare_accounts(config, ledger)
    await prepare_accounts(config, ledger)  # a second writer taking over finds them all in place
    conn = await connect(url)
    try:
        mapped = await accounts.mapped_accounts(conn)
    finally:
        await conn.close()
    assert len(mapped) == len(chart.LEDGERS) * len(chart.OPERATOR_CODES)
    found = await ledger.lookup_accounts([m.account_id for m in mapped])
    assert {(a.ledger, a.code) for a in found} == {
        (chart.ledger_of(c), int(code)) for c in chart.LEDGERS for code in chart.OPERATOR_CODES
    }


async def test_a_wrong_account_stops_the_writer_from_moving_money(fresh: tuple[str, Ledger]) -> None:
    url, ledger = fresh
    # Someone opened the THB fee account by hand with the wrong code, before any writer ran.
    spec = chart.AccountSpec("operator", "fee_revenue", "THB", chart.Code.FEE_REVENUE)
    wrong = tb.Account(id=accounts.spec_account(spec).id, ledger=764, code=int(chart.Code.MERCHANT))
    assert (await ledger.create_accounts([wrong]))[0].status == tb.CreateAccountStatus.CREATED
    with pytest.raises((ChartOfAccountsError, accounts.AccountOpenError)):
        await prepare_accounts(Settings(database_url=url), ledger)
