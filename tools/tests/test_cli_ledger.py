"""`pm ledger verify|open-operator-accounts|account|transfers` on real PostgreSQL with the embedded ledger."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest
import pytest_asyncio
import tigerbeetle as tb
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from pm_shared.db import Conn, connect, drop_database, ensure_database, migrate
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.ledger.accounts import MappedAccount, open_accounts, open_operator_accounts, spec_account
from pm_shared.ledger.api import Ledger
from pm_tools import ledger_ops
from pm_tools.cli import common, formats, ledger_cmd
from pm_tools.testing.db import new_database_url

TF = tb.TransferFlags
UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/pm_nowhere"


def cli() -> typer.Typer:
    # Only this module's commands: app.py also imports command modules other people own.
    app = typer.Typer()
    app.add_typer(ledger_cmd.app, name="ledger")
    return app


def explain(result: Result) -> str:
    return (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
    )


def rows(output: str) -> list[list[str]]:
    """The body rows of the tables in `output`, as lists of cells."""
    return [
        [c.strip() for c in line.strip("│").split("│")]
        for line in output.splitlines()
        if line.startswith("│")
    ]


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plain text even under `pytest -s` (a terminal at import time would turn colours on).
    monkeypatch.setattr(common, "out", Console(highlight=False, emoji=False, color_system=None))
    monkeypatch.setattr(common, "err", Console(stderr=True, highlight=False, emoji=False, color_system=None))


@dataclass
class World:
    url: str
    ledger: Ledger
    conn: Conn

    async def invoke(self, args: Sequence[str], *, database_url: str | None = None) -> Result:
        env: dict[str, str | None] = {"PM_DATABASE_URL": database_url or self.url, "PM_LEDGER_URL": None}

        def call() -> Result:
            return CliRunner().invoke(cli(), ["ledger", *args], env=env)

        # In a thread: the command runs its own event loop (asyncio.run).
        return await asyncio.to_thread(call)

    async def wallet(self, owner_id: str, currency: str = "THB") -> MappedAccount:
        spec = chart.AccountSpec("user", owner_id, currency, chart.Code.USER_WALLET)
        (row,) = await open_accounts(self.ledger, self.conn, [spec])
        return row

    async def operator(self, currency: str, code: chart.Code) -> MappedAccount:
        rows = await open_operator_accounts(self.ledger, self.conn, [currency])
        return next(r for r in rows if r.code == code)

    async def transfer(
        self,
        debit: int,
        credit: int,
        amount: int,
        leg: str,
        *,
        code: int = 7,
        flags: tb.TransferFlags = TF.NONE,
    ) -> tb.Transfer:
        (account,) = await self.ledger.lookup_accounts([debit])
        transfer = tb.Transfer(
            id=ids.transfer_id("cli-test", leg),
            debit_account_id=debit,
            credit_account_id=credit,
            amount=amount,
            ledger=account.ledger,
            code=code,
            flags=flags,
        )
        (result,) = await self.ledger.create_transfers([transfer])
        assert result.status == tb.CreateTransferStatus.CREATED, result
        (stored,) = await self.ledger.lookup_transfers([transfer.id])
        return stored


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


# Unit-level: id parsing and amount formatting.


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("42", 42),
        ("0x2a", 42),
        ("0X2A", 42),
        ("1_000", 1000),
        (str(2**128 - 2), 2**128 - 2),
        ("0x" + "f" * 31, 2**124 - 1),
    ],
)
def test_parse_u128_accepts_decimal_and_hex(text: str, value: int) -> None:
    assert ledger_ops.parse_u128(text) == value


@pytest.mark.parametrize(
    "text", ["", "abc", "-1", "0x", "0xg1", "1.5", "0", str(2**128 - 1), str(2**128), "٣"]
)
def test_parse_u128_rejects_what_is_not_an_account_id(text: str) -> None:
    with pytest.raises(ValueError, match="not an account id"):
        ledger_ops.parse_u128(text)


@pytest.mark.parametrize(
    ("minor", "currency", "shown"),
    [
        (123456, "THB", "1,234.56 THB"),
        (5, "USD", "0.05 USD"),
        (-250, "RUB", "-2.50 RUB"),
        (0, "THB", "0.00 THB"),
        (10**30, "USD", "10,000,000,000,000,000,000,000,000,000.00 USD"),
        (1234, None, "1,234 (minor units)"),
    ],
)
def test_format_amount(minor: int, currency: str | None, shown: str) -> None:
    assert formats.format_amount(minor, currency) == shown


# verify / open-operator-accounts.


async def test_verify_exits_0_on_a_good_state_and_1_with_a_table_of_problems(world: World) -> None:
    opened = await world.invoke(["open-operator-accounts"])
    assert opened.exit_code == 0, explain(opened)
    assert len(rows(opened.stdout)) == len(chart.LEDGERS) * len(chart.OPERATOR_CODES)
    again = await world.invoke(["open-operator-accounts"])
    assert again.exit_code == 0, explain(again)
    assert rows(again.stdout) == rows(opened.stdout)
    count = await world.conn.fetchval("SELECT count(*) FROM pm.tb_account_map")
    assert count == len(chart.LEDGERS) * len(chart.OPERATOR_CODES)

    good = await world.invoke(["verify"])
    assert good.exit_code == 0, explain(good)
    assert f"ok: {count} mapped account(s)" in good.stdout
    assert rows(good.stdout) == []

    ghost = chart.AccountSpec("user", "u-ghost", "THB", chart.Code.USER_WALLET)
    ghost_id = spec_account(ghost).id
    await world.conn.execute(
        "INSERT INTO pm.tb_account_map (owner_kind, owner_id, currency, code, account_id, ledger, flags)"
        " VALUES ('user', 'u-ghost', 'THB', 1, $1, 764, $2)",
        uuid.UUID(int=ghost_id),
        int(ghost.flags),
    )
    bad = await world.invoke(["verify"])
    assert bad.exit_code == 1, explain(bad)
    assert f"1 problem(s) in {count + 1} mapped account(s)" in bad.stdout
    assert rows(bad.stdout) == [
        ["missing", str(ghost_id), "user/u-ghost", "THB", "1 (user_wallet)", "no such account on the ledger"]
    ]


async def test_verify_requires_the_operator_accounts_unless_told_not_to(world: World) -> None:
    empty = await world.invoke(["verify"])
    assert empty.exit_code == 1, explain(empty)
    listed = rows(empty.stdout)
    assert len(listed) == len(chart.LEDGERS) * len(chart.OPERATOR_CODES)
    assert {r[0] for r in listed} == {"unmapped_operator"}
    assert [listed[0][0], listed[0][3], listed[0][4]] == ["unmapped_operator", "THB", "10 (fee_revenue)"]

    relaxed = await world.invoke(["verify", "--no-operator"])
    assert relaxed.exit_code == 0, explain(relaxed)
    assert "ok: 0 mapped account(s)" in relaxed.stdout


async def test_open_operator_accounts_for_one_currency_and_an_unknown_one(world: World) -> None:
    result = await world.invoke(["open-operator-accounts", "--currency", "usd"])
    assert result.exit_code == 0, explain(result)
    assert {r[0] for r in rows(result.stdout)} == {"USD"}
    unknown = await world.invoke(["open-operator-accounts", "--currency", "EUR"])
    assert unknown.exit_code == 2, explain(unknown)
    assert "no ledger for currency 'EUR'" in unknown.stderr


async def test_verify_exits_2_when_the_database_or_ledger_cannot_be_reached(world: World) -> None:
    no_db = await world.invoke(["verify"], database_url=UNREACHABLE_DB)
    assert no_db.exit_code == 2, explain(no_db)
    assert "cannot reach the database" in no_db.stderr

    no_ledger = await world.invoke(["verify", "--ledger-url", "embedded+" + UNREACHABLE_DB])
    assert no_ledger.exit_code == 2, explain(no_ledger)
    assert "cannot reach the ledger" in no_ledger.stderr

    # A TigerBeetle client retries forever: --timeout turns silence into exit 2.
    no_cluster = await world.invoke(
        ["verify", "--ledger-url", "tigerbeetle://0@127.0.0.1:1", "--timeout", "0.5"]
    )
    assert no_cluster.exit_code == 2, explain(no_cluster)
    assert "no answer within 0.5s from the ledger tigerbeetle://0@127.0.0.1:1" in no_cluster.stderr

    bad_url = await world.invoke(["verify", "--ledger-url", "mysql://x/y"])
    assert bad_url.exit_code == 2, explain(bad_url)
    assert "unknown ledger backend" in bad_url.stderr


# account.


async def test_account_shows_balances_in_major_units_and_the_owner(world: World) -> None:
    equity = await world.operator("THB", chart.Code.OPERATOR_EQUITY)
    wallet = await world.wallet("u-rich")
    await world.transfer(equity.account_id, wallet.account_id, 123_456, "fund")
    await world.transfer(wallet.account_id, equity.account_id, 1_000_00, "hold", flags=TF.PENDING)

    for shown_id in (str(wallet.account_id), f"0x{wallet.account_id:x}"):
        result = await world.invoke(["account", shown_id])
        assert result.exit_code == 0, explain(result)
        fields = {r[0]: r[1] for r in rows(result.stdout)}
        assert fields["id"] == str(wallet.account_id)
        assert fields["owner"] == "user/u-rich (THB, 1 (user_wallet))"
        assert fields["ledger"] == "764 (THB)"
        assert fields["code"] == "1 (user_wallet)"
        assert fields["flags"] == "debits_must_not_exceed_credits, history"
        assert fields["credits posted"] == "1,234.56 THB"
        assert fields["debits pending"] == "1,000.00 THB"
        assert fields["debits posted"] == "0.00 THB"
        assert fields["net posted (credits - debits)"] == "1,234.56 THB"


async def test_account_of_an_unmapped_account_and_a_missing_one(world: World) -> None:
    loose = tb.Account(id=ids.account_id("test", "loose", 840, 30), ledger=840, code=30)
    (created,) = await world.ledger.create_accounts([loose])
    assert created.status == tb.CreateAccountStatus.CREATED
    result = await world.invoke(["account", str(loose.id)])
    assert result.exit_code == 0, explain(result)
    fields = {r[0]: r[1] for r in rows(result.stdout)}
    assert fields["owner"] == "not in pm.tb_account_map"
    assert fields["credits posted"] == "0.00 USD"
    assert fields["flags"] == "-"

    missing = await world.invoke(["account", str(loose.id + 1)])
    assert missing.exit_code == 1, explain(missing)
    assert f"no account {loose.id + 1}" in missing.stderr


@pytest.mark.parametrize("bad", ["not-a-number", "0x", str(2**128), "0", "-5"])
async def test_a_bad_id_exits_2(world: World, bad: str) -> None:
    for command in ("account", "transfers"):
        result = await world.invoke([command, "--", bad])
        assert result.exit_code == 2, explain(result)
        assert "not an account id" in result.stderr


# transfers.


async def test_transfers_lists_in_order_and_respects_limit_and_reversed(world: World) -> None:
    equity = await world.operator("USD", chart.Code.OPERATOR_EQUITY)
    wallet = await world.wallet("u-busy", "USD")
    made = [
        await world.transfer(equity.account_id, wallet.account_id, 100 * (n + 1), f"in-{n}") for n in range(3)
    ]
    made.append(await world.transfer(wallet.account_id, equity.account_id, 250, "out", code=9))

    result = await world.invoke(["transfers", str(wallet.account_id)])
    assert result.exit_code == 0, explain(result)
    listed = rows(result.stdout)
    assert [r[1] for r in listed] == [str(t.id) for t in made]
    assert [r[2] for r in listed] == ["credit", "credit", "credit", "debit"]
    assert {r[3] for r in listed} == {str(equity.account_id)}
    assert [r[4] for r in listed] == ["1.00 USD", "2.00 USD", "3.00 USD", "2.50 USD"]
    assert [r[6] for r in listed] == ["7", "7", "7", "9"]
    times = [r[0] for r in listed]
    assert times == sorted(times) and all(
        re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6} UTC", t) for t in times
    )
    assert formats.format_timestamp(made[0].timestamp) == times[0]

    limited = await world.invoke(["transfers", str(wallet.account_id), "--limit", "2"])
    assert limited.exit_code == 0, explain(limited)
    assert [r[1] for r in rows(limited.stdout)] == [str(t.id) for t in made[:2]]

    newest = await world.invoke(["transfers", f"0x{wallet.account_id:x}", "--reversed", "--limit", "3"])
    assert newest.exit_code == 0, explain(newest)
    assert [r[1] for r in rows(newest.stdout)] == [str(t.id) for t in reversed(made[1:])]

    pending = await world.transfer(wallet.account_id, equity.account_id, 1, "hold", flags=TF.PENDING)
    flagged = await world.invoke(["transfers", str(wallet.account_id), "--reversed", "--limit", "1"])
    assert rows(flagged.stdout) == [
        [
            formats.format_timestamp(pending.timestamp),
            str(pending.id),
            "debit",
            str(equity.account_id),
            "0.01 USD",
            "pending",
            "7",
        ]
    ]


async def test_transfers_of_a_missing_account_and_a_bad_limit(world: World) -> None:
    missing = await world.invoke(["transfers", "12345"])
    assert missing.exit_code == 1, explain(missing)
    assert "no account 12345" in missing.stderr
    bad_limit = await world.invoke(["transfers", "12345", "--limit", "0"])
    assert bad_limit.exit_code == 2, explain(bad_limit)


async def test_an_unmigrated_database_or_ledger_exits_2(world: World, empty_database_url: str) -> None:
    no_map = await world.invoke(
        ["verify", "--ledger-url", "embedded+" + world.url], database_url=empty_database_url
    )
    assert no_map.exit_code == 2, explain(no_map)
    assert "is not migrated" in no_map.stderr and "pm.tb_account_map" in no_map.stderr

    no_ledger = await world.invoke(["account", "42", "--ledger-url", "embedded+" + empty_database_url])
    assert no_ledger.exit_code == 2, explain(no_ledger)
    assert "has no schema" in no_ledger.stderr
