"""`pm fx rates set|list` on real PostgreSQL: rates kept exactly as written, every one listed newest
first, refused as the API refuses them (exit 2, nothing stored)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from decimal import Decimal

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from pm_shared import db
from pm_shared.fx import pricing, queries, store
from pm_tools.cli import common, fx_cmd
from pm_tools.testing.db import run


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(fx_cmd.app, name="fx")
    return app


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(highlight=False, emoji=False, color_system=None, width=200))
    monkeypatch.setattr(common, "err", Console(stderr=True, highlight=False, emoji=False, color_system=None))


def invoke(database_url: str, args: Sequence[str]) -> Result:
    env = {"PM_DATABASE_URL": database_url, "PM_ENV_FILE": "/nonexistent/env"}
    return CliRunner().invoke(cli(), ["fx", "rates", *args], env=env)


async def stored(database_url: str, source: str) -> list[store.StoredRate]:
    conn = await db.connect(database_url)
    try:
        return [r for r in await store.rates(conn, limit=1_000) if r.source == source]
    finally:
        await conn.close()


async def newest_in_force(database_url: str, pair: str) -> int:
    """The id of the rate a quote would use now (the store's own query), the pair written either way."""
    conn = await db.connect(database_url)
    try:
        base, quote = pair.split("/")
        row = await conn.fetchrow(queries.CURRENT_RATE, [str(p) for p in pricing.Pair.of(base, quote)])
        assert row is not None
        return int(row["id"])
    finally:
        await conn.close()


def test_a_rate_is_kept_exactly_as_written_and_listed_newest_first(database_url: str) -> None:
    source = f"test-{uuid.uuid4().hex[:8]}"
    # Twelve decimals: a float would print 35.812512345679 or worse.
    first = invoke(
        database_url, ["set", "USD/THB", "35.812512345678", "--spread-bps", "50", "--source", source]
    )
    assert first.exit_code == 0, first.output
    assert "35.812512345678" in first.output and "pm fx (" in first.output
    second = invoke(database_url, ["set", "USD/THB", "36", "--spread-bps", "0", "--source", source, "--json"])
    assert second.exit_code == 0, second.output
    (shown,) = json.loads(second.output)
    assert (shown["pair"], shown["rate"], shown["spreadBps"], shown["source"]) == ("USD/THB", "36", 0, source)
    assert shown["createdBy"].startswith("pm fx (")

    rates = run(stored(database_url, source))
    assert [(r.rate.rate, r.rate.spread_bps) for r in rates] == [
        (Decimal("36"), 0),
        (Decimal("35.812512345678"), 50),
    ]
    assert all(r.created_by.startswith("pm fx (") for r in rates)
    assert run(newest_in_force(database_url, "THB/USD")) == shown["id"]

    listed = invoke(database_url, ["list", "--pair", "USD/THB", "--json"])
    assert listed.exit_code == 0, listed.output
    mine = [r for r in json.loads(listed.output) if r["source"] == source]
    assert [r["rate"] for r in mine] == ["36", "35.812512345678"]
    table = invoke(database_url, ["list"])
    assert table.exit_code == 0 and "35.812512345678" in table.output and source in table.output, table.output
    other = invoke(database_url, ["list", "--pair", "THB/RUB", "--json"])
    assert other.exit_code == 0 and all(r["pair"] == "THB/RUB" for r in json.loads(other.output))


def test_a_rate_valid_later_is_kept_but_not_yet_in_force(database_url: str) -> None:
    source = f"test-{uuid.uuid4().hex[:8]}"
    now = invoke(database_url, ["set", "RUB/USD", "0.0105", "--spread-bps", "100", "--source", source])
    later = invoke(
        database_url,
        [
            "set",
            "RUB/USD",
            "0.0110",
            "--spread-bps",
            "100",
            "--source",
            source,
            "--valid-from",
            "2999-01-01T00:00:00Z",
        ],
    )
    assert now.exit_code == later.exit_code == 0, (now.output, later.output)
    assert "not in force before 2999-01-01 00:00:00 UTC" in later.output
    found = run(stored(database_url, source))
    assert [str(r.rate.rate) for r in found] == ["0.0110", "0.0105"]
    assert run(newest_in_force(database_url, "USD/RUB")) == found[1].id


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["USD/EUR", "1.1"], "PAIR"),
        (["USD/USD", "1"], "PAIR"),
        (["usd/thb", "35"], "PAIR"),
        (["USD/THB", "0"], "RATE"),
        (["USD/THB", "-35"], "RATE"),
        (["USD/THB", "3.58e1"], "RATE"),
        (["USD/THB", "35.8125000000001"], "RATE"),  # 13 decimals
        (["USD/THB", "1234567890"], "RATE"),  # 10 integer digits
        (["USD/THB", "035.5"], "RATE"),
        (["USD/THB", "35", "--spread-bps", "2001"], "--spread-bps"),
        (["USD/THB", "35", "--spread-bps", "-1"], "--spread-bps"),
        (["USD/THB", "35", "--valid-from", "2025-01-01T00:00:00"], "--valid-from"),
        (["USD/THB", "35", "--valid-from", "tomorrow"], "--valid-from"),
    ],
)
def test_a_rate_the_api_would_refuse_exits_2_and_stores_nothing(
    database_url: str, args: list[str], says: str
) -> None:
    source = f"test-{uuid.uuid4().hex[:8]}"
    spread = [] if "--spread-bps" in args else ["--spread-bps", "50"]
    result = invoke(database_url, ["set", *args, *spread, "--source", source])
    assert result.exit_code == 2, result.output
    assert says in result.output and "regex" not in result.output, result.output
    assert run(stored(database_url, source)) == []


def test_list_refuses_an_unknown_pair_and_an_unreachable_database_exits_2(database_url: str) -> None:
    unknown = invoke(database_url, ["list", "--pair", "EUR/USD"])
    assert unknown.exit_code == 2 and "--pair" in unknown.output, unknown.output
    nowhere = "postgresql://postgres@127.0.0.1:1/pm"
    down = invoke(nowhere, ["list"])
    assert down.exit_code == 2 and "cannot reach the database" in down.output, down.output
    refused = invoke(nowhere, ["set", "USD/THB", "35", "--spread-bps", "1"])
    assert refused.exit_code == 2 and "cannot reach the database" in refused.output, refused.output
