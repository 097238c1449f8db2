"""Opening accounts from the chart, `pm.tb_account_map`, and the verifier, on real PostgreSQL with the
embedded ledger. Each test gets its own migrated database: the verifier reads the whole map."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import pytest_asyncio
import tigerbeetle as tb

from pm_shared.db import Conn, connect, drop_database, ensure_database, migrate
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.ledger.accounts import (
    AccountOpenError,
    MappedAccount,
    ProblemKind,
    lookup_mapped,
    lookup_mapped_id,
    open_accounts,
    open_operator_accounts,
    spec_account,
    verify,
)
from pm_shared.ledger.api import Ledger
from pm_tools.testing.db import new_database_url

AF = tb.AccountFlags
TF = tb.TransferFlags


@dataclass
class World:
    url: str
    ledger: Ledger
    conn: Conn

    async def map_count(self) -> int:
        count: int = await self.conn.fetchval("SELECT count(*) FROM pm.tb_account_map")
        return count

    async def insert_map_row(self, spec: chart.AccountSpec, account_id: int) -> None:
        """A map row written behind `open_accounts`' back (the ledger is not touched)."""
        await self.conn.execute(
            "INSERT INTO pm.tb_account_map (owner_kind, owner_id, currency, code, account_id, ledger, flags)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7)",
            spec.owner_kind,
            spec.owner_id,
            spec.currency,
            int(spec.code),
            uuid.UUID(int=account_id),
            spec.ledger,
            int(spec.flags),
        )


@pytest_asyncio.fixture
async def world() -> AsyncIterator[World]:
    url = new_database_url()
    await ensure_database(url)
    try:
        await migrate(url)
        ledger = await open_ledger("embedded+" + url)
        conn = await connect(url)
        try:
            yield World(url, ledger, conn)
        finally:
            await conn.close()
            await ledger.close()
    finally:
        await drop_database(url, force=True)


def wallet(owner_id: str, currency: str = "THB") -> chart.AccountSpec:
    return chart.AccountSpec("user", owner_id, currency, chart.Code.USER_WALLET)


def test_spec_account_takes_its_id_and_fields_from_ids_and_the_chart() -> None:
    spec = chart.AccountSpec("merchant", "m-7", "USD", chart.Code.MERCHANT)
    account = spec_account(spec)
    assert account.id == ids.account_id("merchant", "m-7", 840, 2)
    assert (account.ledger, account.code) == (840, 2)
    assert account.flags == AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.HISTORY
    assert spec_account(spec) == account
    assert spec_account(chart.AccountSpec("merchant", "m-7", "THB", chart.Code.MERCHANT)).id != account.id


async def test_open_operator_accounts_twice_gives_the_same_accounts_once(world: World) -> None:
    first = await open_operator_accounts(world.ledger, world.conn)
    expected_specs = [s for currency in chart.LEDGERS for s in chart.operator_accounts(currency)]
    assert len(first) == len(expected_specs) == len(chart.LEDGERS) * len(chart.OPERATOR_CODES)
    assert await world.map_count() == len(expected_specs)

    second = await open_operator_accounts(world.ledger, world.conn)
    assert second == first  # same ids, and the retry did not touch a row (created_at included)
    assert await world.map_count() == len(expected_specs)

    for spec, row in zip(expected_specs, first, strict=True):
        assert (row.owner_kind, row.owner_id, row.currency, row.code) == (
            "operator",
            spec.code.name.lower(),
            spec.currency,
            int(spec.code),
        )
        assert row.account_id == ids.account_id("operator", spec.code.name.lower(), spec.ledger, spec.code)
    on_ledger = {a.id: a for a in await world.ledger.lookup_accounts([r.account_id for r in first])}
    assert len(on_ledger) == len(expected_specs)
    for spec, row in zip(expected_specs, first, strict=True):
        account = on_ledger[row.account_id]
        assert (account.ledger, account.code, account.flags) == (
            spec.ledger,
            int(spec.code),
            chart.FLAGS[spec.code],
        )
        assert (row.ledger, row.flags) == (spec.ledger, int(chart.FLAGS[spec.code]))


async def test_open_operator_accounts_for_chosen_currencies(world: World) -> None:
    rows = await open_operator_accounts(world.ledger, world.conn, ["USD"])
    assert {r.currency for r in rows} == {"USD"}
    assert await world.map_count() == len(chart.OPERATOR_CODES)


async def test_open_accounts_collapses_duplicates_and_keeps_order(world: World) -> None:
    a, b = wallet("u-a"), wallet("u-b", "USD")
    rows = await open_accounts(world.ledger, world.conn, [b, a, b])
    assert [(r.owner_id, r.currency) for r in rows] == [("u-b", "USD"), ("u-a", "THB")]
    assert await world.map_count() == 2
    assert await open_accounts(world.ledger, world.conn, []) == []


async def test_lookup_mapped(world: World) -> None:
    (row,) = await open_accounts(world.ledger, world.conn, [wallet("u-1")])
    found = await lookup_mapped(world.conn, "user", "u-1", "THB", chart.Code.USER_WALLET)
    assert found == row
    assert isinstance(found, MappedAccount)
    assert found.account_id == spec_account(wallet("u-1")).id
    assert await lookup_mapped_id(world.conn, row.account_id) == row
    assert await lookup_mapped(world.conn, "user", "u-1", "USD", chart.Code.USER_WALLET) is None
    assert await lookup_mapped(world.conn, "user", "u-2", "THB", chart.Code.USER_WALLET) is None
    assert await lookup_mapped_id(world.conn, row.account_id + 1) is None


async def test_the_map_stores_the_u128_id_exactly(world: World) -> None:
    (row,) = await open_accounts(world.ledger, world.conn, [wallet("u-exact")])
    text = await world.conn.fetchval("SELECT account_id::text FROM pm.tb_account_map")
    assert uuid.UUID(text).int == spec_account(wallet("u-exact")).id == row.account_id
    # Stored as on the embedded ledger: the map joins ledger.accounts.
    joined = await world.conn.fetchval(
        "SELECT count(*) FROM pm.tb_account_map m JOIN ledger.accounts a ON a.id = m.account_id"
    )
    assert joined == 1


async def test_verify_is_empty_on_a_good_state(world: World) -> None:
    assert await verify(world.ledger, world.conn) == []
    await open_operator_accounts(world.ledger, world.conn)
    await open_accounts(world.ledger, world.conn, [wallet("u-1"), wallet("u-2", "RUB")])
    assert await verify(world.ledger, world.conn) == []


async def test_verify_can_require_the_operator_accounts(world: World) -> None:
    await open_operator_accounts(world.ledger, world.conn, ["THB"])
    assert await verify(world.ledger, world.conn, operator_currencies=["THB"]) == []
    problems = await verify(world.ledger, world.conn, operator_currencies=chart.LEDGERS)
    assert {(p.kind, p.currency) for p in problems} == {
        (ProblemKind.UNMAPPED_OPERATOR, "USD"),
        (ProblemKind.UNMAPPED_OPERATOR, "RUB"),
    }
    assert sorted((p.currency, p.code) for p in problems) == sorted(
        (c, int(code)) for c in ("USD", "RUB") for code in chart.OPERATOR_CODES
    )
    usd_fee = chart.AccountSpec("operator", "fee_revenue", "USD", chart.Code.FEE_REVENUE)
    assert spec_account(usd_fee).id in {p.account_id for p in problems}


async def test_verify_reports_a_mapped_account_missing_from_the_ledger(world: World) -> None:
    await open_operator_accounts(world.ledger, world.conn)
    ghost = wallet("u-ghost")
    await world.insert_map_row(ghost, spec_account(ghost).id)

    problems = await verify(world.ledger, world.conn)
    assert [(p.kind, p.account_id, p.owner_id) for p in problems] == [
        (ProblemKind.MISSING, spec_account(ghost).id, "u-ghost")
    ]


async def test_verify_reports_wrong_code_and_flags(world: World) -> None:
    spec = wallet("u-odd")
    # Someone created the account at the spec's id by hand, as a plain account with another code.
    odd = tb.Account(
        id=spec_account(spec).id, ledger=spec.ledger, code=int(chart.Code.MERCHANT), flags=AF.NONE
    )
    (result,) = await world.ledger.create_accounts([odd])
    assert result.status == tb.CreateAccountStatus.CREATED
    await world.insert_map_row(spec, odd.id)

    problems = await verify(world.ledger, world.conn)
    assert sorted(p.kind for p in problems) == sorted([ProblemKind.CODE_MISMATCH, ProblemKind.FLAGS_MISMATCH])
    assert all(p.account_id == odd.id for p in problems)
    flags_problem = next(p for p in problems if p.kind is ProblemKind.FLAGS_MISMATCH)
    assert "debits_must_not_exceed_credits" in flags_problem.detail


async def test_verify_reports_another_ledger(world: World) -> None:
    spec = wallet("u-elsewhere")
    odd = tb.Account(id=spec_account(spec).id, ledger=840, code=int(spec.code), flags=spec.flags)
    (result,) = await world.ledger.create_accounts([odd])
    assert result.status == tb.CreateAccountStatus.CREATED
    await world.insert_map_row(spec, odd.id)
    assert [p.kind for p in await verify(world.ledger, world.conn)] == [ProblemKind.LEDGER_MISMATCH]


async def test_verify_reports_an_id_that_is_not_the_deterministic_one(world: World) -> None:
    spec, other = wallet("u-1"), wallet("u-2")
    # The account exists (it is u-2's), but the map says it is u-1's.
    (result,) = await world.ledger.create_accounts([spec_account(other)])
    assert result.status == tb.CreateAccountStatus.CREATED
    await world.insert_map_row(spec, spec_account(other).id)
    problems = await verify(world.ledger, world.conn)
    assert [(p.kind, p.owner_id) for p in problems] == [(ProblemKind.ID_MISMATCH, "u-1")]


async def test_verify_reports_a_map_row_the_chart_disagrees_with(world: World) -> None:
    (row,) = await open_accounts(world.ledger, world.conn, [wallet("u-1")])
    await world.conn.execute("UPDATE pm.tb_account_map SET flags = 0")
    assert [p.kind for p in await verify(world.ledger, world.conn)] == [ProblemKind.MAP_MISMATCH]
    await world.conn.execute("UPDATE pm.tb_account_map SET code = 77")
    problems = await verify(world.ledger, world.conn)
    assert [(p.kind, p.account_id) for p in problems] == [(ProblemKind.UNKNOWN_CHART, row.account_id)]


async def test_verify_reports_a_closed_account_as_closed_only(world: World) -> None:
    operator = await open_operator_accounts(world.ledger, world.conn, ["THB"])
    equity = next(r for r in operator if r.code == chart.Code.OPERATOR_EQUITY)
    (row,) = await open_accounts(world.ledger, world.conn, [wallet("u-leaving")])
    closing = tb.Transfer(
        id=ids.transfer_id("close-u-leaving", "close"),
        debit_account_id=row.account_id,
        credit_account_id=equity.account_id,
        amount=0,
        ledger=row.ledger,
        code=1,
        flags=TF.PENDING | TF.CLOSING_DEBIT,
    )
    (result,) = await world.ledger.create_transfers([closing])
    assert result.status == tb.CreateTransferStatus.CREATED
    (account,) = await world.ledger.lookup_accounts([row.account_id])
    assert account.flags & AF.CLOSED

    problems = await verify(world.ledger, world.conn)
    assert [(p.kind, p.account_id) for p in problems] == [(ProblemKind.CLOSED, row.account_id)]

    # Opening it again is not an error (the ledger answers exists_with_different_flags: `closed`).
    (created,) = await world.ledger.create_accounts([spec_account(wallet("u-leaving"))])
    assert created.status == tb.CreateAccountStatus.EXISTS_WITH_DIFFERENT_FLAGS
    assert await open_accounts(world.ledger, world.conn, [wallet("u-leaving")]) == [row]

    # Reopened (the closing transfer voided): all is well again.
    void = tb.Transfer(
        id=ids.transfer_id("close-u-leaving", "reopen"),
        pending_id=closing.id,
        flags=TF.VOID_PENDING_TRANSFER,
    )
    (result,) = await world.ledger.create_transfers([void])
    assert result.status == tb.CreateTransferStatus.CREATED
    assert await verify(world.ledger, world.conn) == []


async def test_open_accounts_names_every_spec_the_ledger_refused(world: World) -> None:
    good, bad = wallet("u-good"), wallet("u-taken")
    taken = tb.Account(id=spec_account(bad).id, ledger=bad.ledger, code=int(bad.code), flags=AF.HISTORY)
    (result,) = await world.ledger.create_accounts([taken])
    assert result.status == tb.CreateAccountStatus.CREATED

    with pytest.raises(AccountOpenError) as raised:
        await open_accounts(world.ledger, world.conn, [good, bad])
    message = str(raised.value)
    assert "user/u-taken THB user_wallet" in message
    assert "exists_with_different_flags" in message
    assert "u-good" not in message
    assert raised.value.failures == [(bad, "exists_with_different_flags")]
    # Nothing is mapped when the ledger refused part of the request.
    assert await world.map_count() == 0


async def test_open_accounts_refuses_a_map_row_that_disagrees(world: World) -> None:
    spec = wallet("u-1")
    await world.insert_map_row(spec, spec_account(wallet("u-2")).id)
    with pytest.raises(AccountOpenError, match=r"pm.tb_account_map disagrees.*user/u-1 THB"):
        await open_accounts(world.ledger, world.conn, [spec])


async def test_open_accounts_refuses_an_unknown_currency(world: World) -> None:
    with pytest.raises(chart.UnknownCurrencyError):
        await open_accounts(world.ledger, world.conn, [wallet("u-1", "EUR")])
    assert await world.map_count() == 0
