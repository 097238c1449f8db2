"""The FX liquidity gauge (pm_ledger_writer.liquidity): what each currency's liquidity account can still
pay out, read from the ledger, beside its configured threshold; a malformed threshold stops the start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
import tigerbeetle as tb
from prometheus_client import REGISTRY

from pm_ledger_writer import liquidity
from pm_ledger_writer.settings import Settings, load
from pm_ledger_writer.startup import prepare_accounts
from pm_shared.db import drop_database, ensure_database, migrate
from pm_shared.ledger import Ledger, accounts, chart, open_ledger
from pm_shared.settings import SettingsError
from pm_tools.testing.db import new_database_url


@pytest_asyncio.fixture
async def ledger() -> AsyncIterator[Ledger]:
    url = new_database_url()
    await ensure_database(url)
    try:
        await migrate(url)
        opened = await open_ledger("embedded+" + url)
        try:
            await prepare_accounts(Settings(database_url=url), opened)  # the operator's accounts
            yield opened
        finally:
            await opened.close()
    finally:
        await drop_database(url, force=True)


def gauge(name: str, currency: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"currency": currency})


def account(currency: str, code: chart.Code) -> int:
    return accounts.spec_account(chart.AccountSpec("operator", code.name.lower(), currency, code)).id


async def test_the_gauge_shows_what_liquidity_can_still_pay_out(ledger: Ledger) -> None:
    usd, equity = account("USD", chart.Code.FX_LIQUIDITY), account("USD", chart.Code.OPERATOR_EQUITY)
    ledger_number = chart.ledger_of("USD")
    funded = tb.Transfer(id=tb.id(), debit_account_id=equity, credit_account_id=usd, amount=50_000,
                         ledger=ledger_number, code=2)  # fmt: skip
    held = tb.Transfer(id=tb.id(), debit_account_id=usd, credit_account_id=equity, amount=8_000,
                       ledger=ledger_number, code=7, flags=tb.TransferFlags.PENDING)  # fmt: skip
    assert [r.status for r in await ledger.create_transfers([funded, held])] == [
        tb.CreateTransferStatus.CREATED
    ] * 2
    await liquidity.observe(ledger, liquidity.parse_thresholds("USD:30000,THB:5"))
    # A pending payout is no longer available: 500.00 funded, 80.00 held.
    assert gauge("pm_fx_liquidity_available", "USD") == 42_000
    assert gauge("pm_fx_liquidity_available", "THB") == 0
    assert gauge("pm_fx_liquidity_low_threshold", "USD") == 30_000
    assert gauge("pm_fx_liquidity_low_threshold", "THB") == 5


async def test_the_watch_reads_until_halted(ledger: Ledger) -> None:
    halt = asyncio.Event()
    task = asyncio.create_task(liquidity.watch(ledger, {"RUB": 7}, 1.0, halt))
    await asyncio.sleep(0.2)
    assert gauge("pm_fx_liquidity_low_threshold", "RUB") == 7
    halt.set()
    await asyncio.wait_for(task, 2)


@pytest.mark.parametrize("text", ["THB", "EUR:5", "THB:-1", "THB:1.5", "THB:5,USD"])
def test_a_malformed_threshold_stops_the_start(text: str) -> None:
    with pytest.raises(SettingsError, match="PM_LEDGER_WRITER_FX_LIQUIDITY_LOW"):
        load({"PM_LEDGER_WRITER_FX_LIQUIDITY_LOW": text})
    assert load({"PM_LEDGER_WRITER_FX_LIQUIDITY_LOW": "THB:5, USD:0"}).fx_liquidity_low
