"""`pm dlq list|show|replay|purge` against real Redis, on DLQ records made by the real `dlq.move`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
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
from pm_tools.cli import common, dlq_cmd

GROUP = "test-group"
CONSUMER = "test-consumer"


def cli() -> typer.Typer:
    # Only this module's commands: app.py also imports command modules other people own.
    app = typer.Typer()
    app.add_typer(dlq_cmd.app, name="dlq")
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


@pytest.fixture
def spec(stream_name: str, monkeypatch: pytest.MonkeyPatch) -> names.StreamSpec:
    """The only stream the commands know about in a test: a fresh one."""
    test_spec = names.StreamSpec(stream_name, (GROUP,), "test stream")
    monkeypatch.setattr(names, "ALL_STREAMS", (test_spec,))
    return test_spec


@dataclass(frozen=True)
class Letter:
    dlq_id: str
    original_id: str
    payload: bytes | None
    intent_id: str
    message_id: str


@dataclass
class World:
    redis: Redis
    url: str
    key: str
    dlq_key: str

    async def lengths(self) -> tuple[int, int]:
        return await self.redis.xlen(self.key), await self.redis.xlen(self.dlq_key)

    async def dead_letters(self) -> list[str]:
        entries: Any = await self.redis.xrange(self.dlq_key)
        return [entry_id.decode() for entry_id, _ in entries]

    async def add(self, count: int) -> list[tuple[str, bytes, IntentStateChanged]]:
        added = []
        for _ in range(count):
            message = IntentStateChanged(
                intent_id=f"intent-{new_message_id()[:8]}",
                message_id=new_message_id(),
                produced_at=now(),
                state="created",
            )
            payload = msgspec.json.encode(message)
            raw_id: Any = await self.redis.xadd(self.key, {"m": payload})
            entry_id = raw_id.decode()
            added.append((entry_id, payload, message))
        return added

    async def dead_letter(
        self, reason: str = "max_deliveries", error: str = "boom", payload: bytes | None | str = "message"
    ) -> Letter:
        """Add a message, deliver it, and move it to the DLQ with `dlq.move`."""
        ((entry_id, encoded, message),) = await self.add(1)
        reply: Any = await self.redis.xreadgroup(GROUP, CONSUMER, {self.key: ">"}, count=1)
        assert reply[0][1][0][0].decode() == entry_id, "the test stream had undelivered entries"
        stored = encoded if payload == "message" else payload
        assert not isinstance(stored, str)
        await dlq.move(
            self.redis, self.key, GROUP, CONSUMER, [dlq.DeadLetter(entry_id, stored, reason, error, 3)]
        )
        (dlq_id,) = (await self.dead_letters())[-1:]
        return Letter(dlq_id, entry_id, stored, message.intent_id, message.message_id)


@pytest.fixture
async def world(redis: Redis, redis_url: str, spec: names.StreamSpec) -> World:
    key = names.stream_key(spec.name, 0)
    await ensure_group(redis, key, GROUP)
    return World(redis, redis_url, key, names.dlq_key(spec.name, 0))


# --- list / show -------------------------------------------------------------------------------


async def test_list_shows_every_record_with_its_message(world: World) -> None:
    first = await world.dead_letter("max_deliveries", "handler failed: " + "x" * 200)
    second = await world.dead_letter("decode_error", "bad JSON")

    result = await invoke(["dlq", "list", "--redis-url", world.url])

    assert result.exit_code == 0, explain(result)
    body = rows(result.stdout)
    assert [r[:5] for r in body] == [
        [world.dlq_key, first.dlq_id, f"{world.key} {first.original_id}", "max_deliveries", "3"],
        [world.dlq_key, second.dlq_id, f"{world.key} {second.original_id}", "decode_error", "3"],
    ]
    assert body[0][5].startswith("handler failed: xxx") and body[0][5].endswith("…")
    assert len(body[0][5]) <= dlq_cmd.ERROR_WIDTH
    assert [r[8:] for r in body] == [
        [first.intent_id, first.message_id],
        [second.intent_id, second.message_id],
    ]


async def test_list_filters_by_reason_id_and_limit(world: World) -> None:
    first = await world.dead_letter("max_deliveries")
    second = await world.dead_letter("decode_error")
    third = await world.dead_letter("max_deliveries")

    by_reason = await invoke(["dlq", "list", "--redis-url", world.url, "--reason", "max_deliveries"])
    by_id = await invoke(
        ["dlq", "list", "--redis-url", world.url, "--id", second.dlq_id, "--id", third.dlq_id]
    )
    limited = await invoke(["dlq", "list", "--redis-url", world.url, "--limit", "1", "--json"])

    assert by_reason.exit_code == 0, explain(by_reason)
    assert [r[1] for r in rows(by_reason.stdout)] == [first.dlq_id, third.dlq_id]
    assert by_id.exit_code == 0, explain(by_id)
    assert [r[1] for r in rows(by_id.stdout)] == [second.dlq_id, third.dlq_id]
    assert limited.exit_code == 0, explain(limited)
    (record,) = msgspec.json.decode(limited.stdout)
    assert (record["id"], record["reason"], record["intent_id"], record["message_id"]) == (
        first.dlq_id,
        "max_deliveries",
        first.intent_id,
        first.message_id,
    )
    assert record["payload"]["message_id"] == first.message_id
    assert record["original_stream"] == world.key


async def test_list_reports_ids_that_match_nothing(world: World) -> None:
    letter = await world.dead_letter()

    result = await invoke(["dlq", "list", "--redis-url", world.url, "--id", letter.dlq_id, "--id", "1-1"])

    assert result.exit_code == 1, explain(result)
    assert [r[1] for r in rows(result.stdout)] == [letter.dlq_id]
    assert "not found: no DLQ record 1-1" in result.stderr


async def test_show_prints_the_payload_as_json(world: World) -> None:
    letter = await world.dead_letter("unrecoverable", "amount out of range")

    result = await invoke(["dlq", "show", letter.dlq_id, "--redis-url", world.url])

    assert result.exit_code == 0, explain(result)
    assert letter.payload is not None
    expected = msgspec.json.format(letter.payload, indent=2).decode()
    assert expected in result.stdout
    assert f'"message_id": "{letter.message_id}"' in result.stdout
    for name, value in [
        ("original_id", letter.original_id),
        ("reason", "unrecoverable"),
        ("error", "amount out of range"),
        ("consumer", CONSUMER),
        ("intent_id", letter.intent_id),
    ]:
        assert any(line.strip().split(maxsplit=1) == [name, value] for line in result.stdout.splitlines()), (
            name,
            result.stdout,
        )


async def test_show_escapes_a_payload_that_is_not_json(world: World) -> None:
    letter = await world.dead_letter("decode_error", "not JSON", payload=b"\x00garbage [bold]\xff")

    result = await invoke(["dlq", "show", letter.dlq_id, "--redis-url", world.url])

    assert result.exit_code == 0, explain(result)
    assert "payload (not JSON, escaped):" in result.stdout
    assert r"\x00garbage [bold]\xff" in result.stdout


async def test_show_unknown_id_exits_1(world: World) -> None:
    await world.dead_letter()

    result = await invoke(["dlq", "show", "1-1", "--redis-url", world.url])

    assert result.exit_code == 1, explain(result)
    assert "no DLQ record 1-1" in result.stderr


async def test_malformed_id_exits_2(world: World) -> None:
    result = await invoke(["dlq", "show", "latest", "--redis-url", world.url])

    assert result.exit_code == 2, explain(result)
    assert "invalid entry id 'latest'" in result.stderr


async def test_unknown_stream_exits_2_listing_the_known_ones(spec: names.StreamSpec, redis_url: str) -> None:
    for command in (["list"], ["show", "1-1"], ["replay", "--yes"], ["purge", "--yes"]):
        result = await invoke(["dlq", *command, "--stream", "pm:nope", "--redis-url", redis_url])

        assert result.exit_code == 2, explain(result)
        assert f"unknown stream 'pm:nope'; known streams: {spec.name}" in result.stderr


# --- replay ------------------------------------------------------------------------------------


async def test_replay_without_yes_is_a_dry_run(world: World) -> None:
    letter = await world.dead_letter()
    before = await world.lengths()

    result = await invoke(["dlq", "replay", "--redis-url", world.url, "--id", letter.dlq_id])

    assert result.exit_code == 0, explain(result)
    assert await world.lengths() == before
    assert await world.dead_letters() == [letter.dlq_id]
    assert "dry run: pass --yes to replay" in result.stdout
    assert [r[1] for r in rows(result.stdout)] == [letter.dlq_id]


async def test_replay_puts_the_same_payload_back_and_empties_the_dlq(world: World) -> None:
    letter = await world.dead_letter()
    other = await world.dead_letter("decode_error")
    length_before = await world.redis.xlen(world.key)

    result = await invoke(["dlq", "replay", "--redis-url", world.url, "--reason", "max_deliveries", "--yes"])

    assert result.exit_code == 0, explain(result)
    assert await world.dead_letters() == [other.dlq_id]
    assert await world.redis.xlen(world.key) == length_before + 1
    newest: Any = await world.redis.xrevrange(world.key, count=1)
    ((new_id, fields),) = newest
    assert fields == {b"m": letter.payload, b"replayed_from": letter.dlq_id.encode()}
    assert msgspec.json.decode(fields[b"m"])["message_id"] == letter.message_id
    (row,) = rows(result.stdout)
    assert row[:5] == [world.dlq_key, letter.dlq_id, "→", world.key, new_id.decode()]


async def test_replay_under_backpressure_exits_3_and_keeps_the_record(world: World) -> None:
    letter = await world.dead_letter()
    await world.add(3)  # undelivered: 3 outstanding
    before = await world.lengths()

    result = await invoke(
        ["dlq", "replay", "--redis-url", world.url, "--id", letter.dlq_id, "--yes"],
        env={"PM_STREAM_BACKPRESSURE_THRESHOLD": "1"},
    )

    assert result.exit_code == 3, explain(result)
    assert await world.lengths() == before
    assert await world.dead_letters() == [letter.dlq_id]
    assert "back-pressure:" in result.stderr
    assert f"not replayed (1): {world.dlq_key} {letter.dlq_id}" in result.stderr
    assert "retry after 1s" in result.stderr


async def test_backpressure_midway_reports_what_was_replayed(world: World) -> None:
    first = await world.dead_letter()
    second = await world.dead_letter()
    await world.add(2)  # outstanding 2: room for exactly one more under a threshold of 3

    result = await invoke(
        ["dlq", "replay", "--redis-url", world.url, "--reason", "max_deliveries", "--yes"],
        env={"PM_STREAM_BACKPRESSURE_THRESHOLD": "3"},
    )

    assert result.exit_code == 3, explain(result)
    assert await world.dead_letters() == [second.dlq_id]
    assert [r[1] for r in rows(result.stdout)] == [first.dlq_id]
    assert "Replayed 1 of 2 record(s)" in result.stdout
    assert f"not replayed (1): {world.dlq_key} {second.dlq_id}" in result.stderr


async def test_replay_reports_a_failed_record_and_goes_on(world: World) -> None:
    gone = await world.dead_letter("payload_deleted", "deleted", payload=None)
    good = await world.dead_letter("payload_deleted", "deleted")

    result = await invoke(["dlq", "replay", "--redis-url", world.url, "--reason", "payload_deleted", "--yes"])

    assert result.exit_code == 1, explain(result)
    assert await world.dead_letters() == [gone.dlq_id]
    assert [r[1] for r in rows(result.stdout)] == [good.dlq_id]
    assert f"failed: {world.dlq_key} {gone.dlq_id}:" in result.stderr
    assert "payload was deleted" in result.stderr


async def test_replay_to_a_missing_stream_fails_and_keeps_the_record(world: World) -> None:
    letter = await world.dead_letter()
    await world.redis.delete(world.key)

    result = await invoke(["dlq", "replay", "--redis-url", world.url, "--id", letter.dlq_id, "--yes"])

    assert result.exit_code == 1, explain(result)
    assert await world.dead_letters() == [letter.dlq_id]
    assert not await world.redis.exists(world.key)
    assert f"failed: {world.dlq_key} {letter.dlq_id}" in result.stderr


async def test_replay_of_a_missing_id_exits_1(world: World) -> None:
    await world.dead_letter()

    result = await invoke(["dlq", "replay", "--redis-url", world.url, "--id", "1-1", "--yes"])

    assert result.exit_code == 1, explain(result)
    assert "not found: no DLQ record 1-1" in result.stderr
    assert len(await world.dead_letters()) == 1


# --- purge and the empty-filter guard ---------------------------------------------------------------


async def test_purge_dry_run_then_yes(world: World) -> None:
    doomed = await world.dead_letter("decode_error")
    kept = await world.dead_letter("max_deliveries")

    dry = await invoke(["dlq", "purge", "--redis-url", world.url, "--reason", "decode_error"])
    after_dry = await world.dead_letters()
    real = await invoke(["dlq", "purge", "--redis-url", world.url, "--reason", "decode_error", "--yes"])

    assert dry.exit_code == 0, explain(dry)
    assert "dry run: pass --yes to purge" in dry.stdout
    assert [r[1] for r in rows(dry.stdout)] == [doomed.dlq_id]
    assert after_dry == [doomed.dlq_id, kept.dlq_id]
    assert real.exit_code == 0, explain(real)
    assert "purged 1 DLQ record(s)" in real.stdout
    assert await world.dead_letters() == [kept.dlq_id]


@pytest.mark.parametrize("command", ["replay", "purge"])
async def test_an_empty_filter_needs_all(world: World, command: str) -> None:
    letter = await world.dead_letter()
    before = await world.lengths()

    refused = await invoke(["dlq", command, "--redis-url", world.url, "--yes"])
    refused_limited = await invoke(["dlq", command, "--redis-url", world.url, "--limit", "1", "--yes"])
    after_refusal = await world.lengths()
    dry = await invoke(["dlq", command, "--redis-url", world.url, "--all"])

    assert refused.exit_code == 2, explain(refused)
    assert f"refusing to {command} every DLQ record" in refused.stderr
    assert "--all" in refused.stderr
    assert refused_limited.exit_code == 2, explain(refused_limited)
    assert after_refusal == before
    assert dry.exit_code == 0, explain(dry)
    assert [r[1] for r in rows(dry.stdout)] == [letter.dlq_id]
    assert await world.lengths() == before


async def test_purge_all_with_yes_empties_every_dlq(world: World) -> None:
    await world.dead_letter()
    await world.dead_letter("decode_error")

    result = await invoke(["dlq", "purge", "--redis-url", world.url, "--all", "--yes"])

    assert result.exit_code == 0, explain(result)
    assert "purged 2 DLQ record(s)" in result.stdout
    assert await world.dead_letters() == []


async def test_unreachable_redis_exits_2(spec: names.StreamSpec) -> None:
    result = await invoke(["dlq", "list", "--redis-url", "redis://:secret@127.0.0.1:1/9"])

    assert result.exit_code == 2, explain(result)
    assert "cannot reach Redis at redis://:***@127.0.0.1:1/9" in result.stderr
    assert "secret" not in result.stderr
