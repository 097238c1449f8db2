"""`pm streams` against real Redis: the table's figures, unknown lag, JSON, provisioning, errors."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

import msgspec
import pytest
import typer
from redis.asyncio import Redis
from rich.console import Console
from typer.testing import CliRunner, Result

from pm_shared.messages import IntentStateChanged, new_message_id, now
from pm_shared.streams import dlq, names
from pm_shared.streams.provision import ensure_group
from pm_tools.cli import common, formats, streams_cmd

GROUP = "test-group"
CONSUMER = "test-consumer"


def cli() -> typer.Typer:
    # Only this module's command: app.py also imports command modules other people own.
    app = typer.Typer()
    app.command("streams")(streams_cmd.streams)

    @app.callback()
    def _root() -> None:
        """Keep `streams` a subcommand, as under `pm`."""

    return app


async def invoke(args: Sequence[str], env: dict[str, str | None] | None = None) -> Result:
    def call() -> Result:
        return CliRunner().invoke(cli(), list(args), env=env)

    # In a thread: the command runs its own event loop (asyncio.run).
    return await asyncio.to_thread(call)


def explain(result: Result) -> str:
    return (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
    )


def cells(output: str, *needles: str) -> list[str]:
    """The cells of the one table row that contains every needle."""
    rows = [line for line in output.splitlines() if line.startswith("│") and all(n in line for n in needles)]
    assert len(rows) == 1, f"expected one row with {needles}, got {rows}\n{output}"
    return [c.strip() for c in rows[0].strip("│").split("│")]


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    # Plain text even under `pytest -s` (a terminal at import time would turn colours on).
    monkeypatch.setattr(common, "out", Console(highlight=False, emoji=False, color_system=None))
    monkeypatch.setattr(common, "err", Console(stderr=True, highlight=False, emoji=False, color_system=None))


@pytest.fixture
def spec(stream_name: str, monkeypatch: pytest.MonkeyPatch) -> names.StreamSpec:
    """The only stream the commands know about in a test: a fresh one."""
    test_spec = names.StreamSpec(stream_name, (GROUP,), "test stream")
    monkeypatch.setattr(names, "ALL_STREAMS", (test_spec,))
    return test_spec


async def seed(redis: Redis, key: str, count: int) -> list[str]:
    await ensure_group(redis, key, GROUP)
    ids = []
    for i in range(count):
        message = IntentStateChanged(
            intent_id=f"intent-{i}", message_id=new_message_id(), produced_at=now(), state="created"
        )
        entry_id: Any = await redis.xadd(key, {"m": msgspec.json.encode(message)})
        ids.append(entry_id.decode())
    return ids


async def read(redis: Redis, key: str, count: int) -> list[tuple[str, bytes]]:
    reply: Any = await redis.xreadgroup(GROUP, CONSUMER, {key: ">"}, count=count)
    return [(entry_id.decode(), fields[b"m"]) for entry_id, fields in reply[0][1]]


async def backlog(redis: Redis, key: str) -> None:
    """5 entries; 3 read of which 1 dead-lettered: lag 2, pending 2, DLQ 1."""
    await seed(redis, key, 5)
    delivered = await read(redis, key, 3)
    entry_id, payload = delivered[0]
    await dlq.move(redis, key, GROUP, CONSUMER, [dlq.DeadLetter(entry_id, payload, "unhandled", "boom", 3)])


async def test_table_shows_length_lag_pending_and_dlq(
    redis: Redis, redis_url: str, spec: names.StreamSpec
) -> None:
    key = names.stream_key(spec.name, 0)
    await backlog(redis, key)

    result = await invoke(["streams", "--redis-url", redis_url, "--partitions", "2"])

    assert result.exit_code == 0, explain(result)
    stream, group, length, lag, pending, oldest, consumers, dlq_length = cells(result.stdout, key, GROUP)
    assert (stream, group, length, lag, pending, consumers, dlq_length) == (
        key,
        GROUP,
        "5",
        "2",
        "2",
        "1",
        "1",
    )
    assert re.fullmatch(r"\d+\.\ds", oldest), oldest
    # The second partition was never created.
    missing = cells(result.stdout, names.stream_key(spec.name, 1))
    assert missing[1:3] == [GROUP, "not provisioned"]
    assert "unknown" not in result.stdout


async def test_unknown_lag_is_shown_as_unknown_never_zero(
    redis: Redis, redis_url: str, spec: names.StreamSpec
) -> None:
    key = names.stream_key(spec.name, 0)
    ids = await seed(redis, key, 5)
    await read(redis, key, 2)
    await redis.xdel(key, ids[3])  # undelivered: Redis 7 can no longer count the lag
    (group_info,) = await redis.xinfo_groups(key)
    assert group_info["lag"] is None, "precondition: Redis reports a NULL lag"

    table = await invoke(["streams", "--redis-url", redis_url])
    as_json = await invoke(["streams", "--redis-url", redis_url, "--json"])

    assert table.exit_code == 0, explain(table)
    assert cells(table.stdout, key, GROUP)[2:5] == ["4", "unknown", "2"]
    assert "lag unknown" in table.stdout
    assert as_json.exit_code == 0, explain(as_json)
    (row,) = msgspec.json.decode(as_json.stdout)
    assert row["lag"] is None
    assert row["pending"] == 2


async def test_json_lists_every_partition_and_group(
    redis: Redis, redis_url: str, spec: names.StreamSpec
) -> None:
    key = names.stream_key(spec.name, 0)
    await backlog(redis, key)

    result = await invoke(["streams", "--json", "--partitions", "2"], env={"PM_REDIS_URL": redis_url})

    assert result.exit_code == 0, explain(result)
    rows = msgspec.json.decode(result.stdout)
    assert len(rows) == 2
    first, second = rows
    assert first["oldest_pending_age_s"] >= 0
    del first["oldest_pending_age_s"]
    assert first == {
        "stream": spec.name,
        "partition": 0,
        "key": key,
        "group": GROUP,
        "provisioned": True,
        "length": 5,
        "lag": 2,
        "pending": 2,
        "consumers": 1,
        "dlq_length": 1,
    }
    assert second["key"] == names.stream_key(spec.name, 1)
    assert second["provisioned"] is False
    assert second["length"] is None


async def test_provision_creates_missing_groups_once(
    redis: Redis, redis_url: str, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(names, "ALL_STREAMS", (names.StreamSpec(stream_name, ("g1", "g2"), "test"),))

    first = await invoke(["streams", "--redis-url", redis_url, "--partitions", "2", "--provision"])
    again = await invoke(["streams", "--redis-url", redis_url, "--partitions", "2", "--provision", "--json"])

    assert first.exit_code == 0, explain(first)
    assert "4 group(s) created" in first.stdout
    assert "not provisioned" not in first.stdout
    for partition in (0, 1):
        groups = await redis.xinfo_groups(names.stream_key(stream_name, partition))
        assert sorted(g["name"] for g in groups) == [b"g1", b"g2"]
    assert again.exit_code == 0, explain(again)
    assert "0 group(s) created" in again.stderr  # stdout stays pure JSON
    rows = msgspec.json.decode(again.stdout)
    assert [(r["partition"], r["group"], r["provisioned"], r["lag"]) for r in rows] == [
        (0, "g1", True, 0),
        (0, "g2", True, 0),
        (1, "g1", True, 0),
        (1, "g2", True, 0),
    ]


async def test_unreachable_redis_exits_2() -> None:
    result = await invoke(["streams", "--redis-url", "redis://127.0.0.1:1/9"])

    assert result.exit_code == 2, explain(result)
    assert "cannot reach Redis at redis://127.0.0.1:1/9" in result.stderr


async def test_invalid_settings_exit_2(redis_url: str) -> None:
    result = await invoke(["streams", "--redis-url", redis_url], env={"PM_STREAM_PARTITIONS": "many"})

    assert result.exit_code == 2, explain(result)
    assert "invalid configuration: PM_STREAM_PARTITIONS" in result.stderr


def test_human_age() -> None:
    assert [formats.human_age(s) for s in (None, 1.23, 184.0, 7500.0, 3 * 86400 + 4 * 3600)] == [
        "—",
        "1.2s",
        "3m4s",
        "2h5m",
        "3d4h",
    ]
