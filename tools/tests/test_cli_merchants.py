"""`pm merchants` on real PostgreSQL and Redis (no ledger-writer runs: accounts stay unopened)."""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from pm_shared import db
from pm_shared.ledger import accounts, open_ledger
from pm_shared.streams.connection import connect
from pm_shared.streams.names import LEDGER_COMMANDS
from pm_shared.streams.provision import provision
from pm_tools.cli import common, merchants_cmd
from pm_tools.testing.db import run

SETTING = base64.b64encode(bytes(range(40, 72))).decode()
SECRET = re.compile(r"secret: (\S+)")


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(merchants_cmd.app, name="merchants")
    return app


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(highlight=False, emoji=False, color_system=None, width=200))
    monkeypatch.setattr(common, "err", Console(stderr=True, highlight=False, emoji=False, color_system=None))


@pytest.fixture
def streams(redis_url: str) -> None:
    async def provisioned() -> None:
        client = connect(redis_url)
        try:
            await provision(client, 1, [LEDGER_COMMANDS])
        finally:
            await client.aclose()

    run(provisioned())


def invoke(database_url: str, redis_url: str, args: Sequence[str]) -> Result:
    env = {
        "PM_DATABASE_URL": database_url,
        "PM_REDIS_URL": redis_url,
        "PM_KEY_ENCRYPTION_KEY": SETTING,
        "PM_LEDGER_URL": "embedded+" + database_url,
        "PM_ENV_FILE": "/nonexistent/env",
    }
    return CliRunner().invoke(cli(), ["merchants", *args], env=env)


async def keys_of(database_url: str, merchant_id: str) -> list[str]:
    conn = await db.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT key_id FROM pm.service_key WHERE permissions ->> 'merchant' = $1", merchant_id
        )
        return [r["key_id"] for r in rows]
    finally:
        await conn.close()


@pytest.mark.usefixtures("streams")
def test_create_is_idempotent_and_the_lifecycle_is_audited(database_url: str, redis_url: str) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    create = ["create", merchant_id, "--name", "Tea House", "--currency", "thb", "--wait", "0.2"]
    first = invoke(database_url, redis_url, create)
    assert first.exit_code == 0, first.output
    assert "not opened yet" in first.output and "account THB" in first.output
    again = invoke(database_url, redis_url, create)
    assert again.exit_code == 0, again.output
    found_first, found_again = SECRET.search(first.output), SECRET.search(again.output)
    assert found_first and found_again and found_first.group(1) == found_again.group(1)
    assert len(run(keys_of(database_url, merchant_id))) == 1

    listed = invoke(database_url, redis_url, ["list"])
    assert listed.exit_code == 0 and merchant_id in listed.output
    for command, status in (("deactivate", "INACTIVE"), ("reactivate", "ACTIVE")):
        result = invoke(database_url, redis_url, [command, merchant_id])
        assert result.exit_code == 0 and f"{merchant_id}: {status}" in result.output, result.output
    rotated = invoke(database_url, redis_url, ["rotate-secret", merchant_id, "--grace", "0"])
    assert rotated.exit_code == 0 and SECRET.search(rotated.output), rotated.output
    shown = invoke(database_url, redis_url, ["show", merchant_id])
    assert shown.exit_code == 0, shown.output
    for action in ("created", "deactivated", "reactivated", "secret_rotated"):
        assert action + " by pm merchants (" in shown.output


def test_bad_input_and_unknown_merchants_exit_with_their_codes(database_url: str, redis_url: str) -> None:
    bad = invoke(database_url, redis_url, ["create", "..", "--name", "X", "--currency", "THB"])
    assert bad.exit_code == 2 and "merchantId" in bad.output, bad.output
    euro = invoke(database_url, redis_url, ["create", "m-eur", "--name", "X", "--currency", "EUR"])
    assert euro.exit_code == 2, euro.output
    missing = invoke(database_url, redis_url, ["deactivate", "nobody-here"])
    assert missing.exit_code == 1 and "no merchant" in missing.output, missing.output
    assert run(keys_of(database_url, "m-eur")) == []


async def open_operator_accounts(database_url: str) -> None:
    # What the ledger-writer does when it starts (none runs here): the suspense accounts a close needs.
    ledger = await open_ledger("embedded+" + database_url)
    conn = await db.connect(database_url)
    try:
        await accounts.open_operator_accounts(ledger, conn, ["THB"])
    finally:
        await conn.close()
        await ledger.close()


@pytest.mark.usefixtures("streams")
def test_close_accounts_needs_a_deactivated_merchant_and_reactivate_reopens(
    database_url: str, redis_url: str
) -> None:
    run(open_operator_accounts(database_url))
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    made = invoke(
        database_url, redis_url, ["create", merchant_id, "--name", "Tea", "--currency", "THB", "--wait", "0"]
    )
    assert made.exit_code == 0, made.output
    active = invoke(database_url, redis_url, ["close-accounts", merchant_id, "--wait", "0"])
    assert active.exit_code == 1 and "deactivate it first" in active.output, active.output
    # Its account was never opened (no ledger-writer): nothing to move, so the close is immediate.
    closed = invoke(database_url, redis_url, ["deactivate", merchant_id, "--close-accounts", "--wait", "1"])
    assert closed.exit_code == 0, closed.output
    assert f"{merchant_id}: INACTIVE, accounts CLOSED" in closed.output
    reopened = invoke(database_url, redis_url, ["reactivate", merchant_id, "--wait", "1"])
    assert reopened.exit_code == 0 and f"{merchant_id}: ACTIVE, accounts OPEN" in reopened.output, (
        reopened.output
    )
    shown = invoke(database_url, redis_url, ["show", merchant_id])
    assert re.search(r"accounts\s+.\s+OPEN", shown.output), shown.output
    for action in ("accounts_closed", "accounts_reopened"):
        assert action + " by pm merchants (" in shown.output, shown.output
    missing = invoke(database_url, redis_url, ["close-accounts", "nobody-here"])
    assert missing.exit_code == 1 and "no merchant" in missing.output
