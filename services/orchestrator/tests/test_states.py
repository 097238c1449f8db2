"""The state machine against real PostgreSQL: guarded moves, timeline rows and outbox messages in one
transaction, and stale or illegal moves refused."""

from __future__ import annotations

import re
import secrets
import uuid
from collections.abc import AsyncIterator

import asyncpg
import msgspec
import pytest

from pm_client.api import TERMINAL_STATES
from pm_orchestrator import queries
from pm_orchestrator.states import (
    AUTHORIZED,
    CREATED,
    FAILED,
    SETTLED,
    TERMINAL,
    VALIDATED,
    IllegalMoveError,
    Move,
)
from pm_orchestrator.store import move
from pm_shared.db import Pool
from pm_shared.messages import IntentStateChanged, LedgerCommand, new_message_id, now
from pm_shared.outbox import Outgoing
from pm_shared.streams.publisher import encode

PERMISSIONS = '{"operations": ["P2P"], "owners": null, "admin": false}'


@pytest.fixture(autouse=True)
async def no_leftovers(db_pool: Pool) -> AsyncIterator[None]:
    """The session database is shared: outbox rows left unpublished here would be published by the
    relay of an orchestrator another test starts, and intents left half-way (moved without the
    saga's steps) would be resumed by its sweep. Remove this test's rows when it ends."""
    yield
    await db_pool.execute("DELETE FROM pm.outbox WHERE intent_id = ANY($1::text[])", CREATED_HERE)
    await db_pool.execute("DELETE FROM pm.intent_event WHERE intent_id = ANY($1::uuid[])", CREATED_HERE)
    await db_pool.execute("DELETE FROM pm.intent WHERE id = ANY($1::uuid[])", CREATED_HERE)
    CREATED_HERE.clear()


CREATED_HERE: list[str] = []


async def new_intent(db_pool: Pool) -> str:
    key_id = f"pk_{secrets.token_hex(12)}"
    intent_id = uuid.uuid4()
    await db_pool.execute(
        "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, $2, $3::jsonb)",
        key_id,
        b"x",
        PERMISSIONS,
    )
    await db_pool.execute(
        """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount, currency,
                                  source, target)
           VALUES ($1, $2, 'k', '\\x00', 'P2P', 'CREATED', 100, 'THB', '{}', '{}')""",
        intent_id,
        key_id,
    )
    CREATED_HERE.append(str(intent_id))
    return str(intent_id)


async def state(db_pool: Pool, intent_id: str) -> tuple[str, str | None]:
    row = await db_pool.fetchrow("SELECT state, failure_code FROM pm.intent WHERE id = $1::uuid", intent_id)
    assert row is not None
    return row["state"], row["failure_code"]


async def timeline(db_pool: Pool, intent_id: str) -> list[tuple[str | None, str]]:
    rows = await db_pool.fetch(
        "SELECT from_state, to_state FROM pm.intent_event WHERE intent_id = $1::uuid ORDER BY id", intent_id
    )
    return [(r["from_state"], r["to_state"]) for r in rows]


async def outbox(db_pool: Pool, intent_id: str) -> list[str]:
    rows = await db_pool.fetch("SELECT stream FROM pm.outbox WHERE intent_id = $1 ORDER BY id", intent_id)
    return [r["stream"] for r in rows]


async def test_the_happy_path_writes_each_move_its_event_and_its_messages(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)
    command = LedgerCommand(
        intent_id=intent_id, message_id=new_message_id(), produced_at=now(), step="authorize"
    )
    for change, extra in [
        (Move(intent_id, CREATED, VALIDATED, "checked"), []),
        (Move(intent_id, VALIDATED, AUTHORIZED, "funds reserved"), [Outgoing("pm:ledger:commands", command)]),
        (Move(intent_id, AUTHORIZED, SETTLED, "posted"), []),
    ]:
        async with db_pool.acquire() as conn, conn.transaction():
            sent = await move(conn, change, extra)
        assert sent is not None
        first = sent[0].message
        assert isinstance(first, IntentStateChanged) and first.state == change.to_state
        assert first.previous == change.from_state
        assert [o.message for o in sent[1:]] == [o.message for o in extra]
    assert await state(db_pool, intent_id) == (SETTLED, None)
    assert await timeline(db_pool, intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    assert await outbox(db_pool, intent_id) == ["pm:events", "pm:events", "pm:ledger:commands", "pm:events"]
    payload = await db_pool.fetchval(
        "SELECT payload FROM pm.outbox WHERE intent_id = $1 AND stream = 'pm:events' "
        "ORDER BY id DESC LIMIT 1",
        intent_id,
    )
    assert msgspec.json.decode(payload, type=IntentStateChanged).state == SETTLED


async def test_a_stale_or_repeated_move_changes_nothing(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)
    async with db_pool.acquire() as conn, conn.transaction():
        assert await move(conn, Move(intent_id, CREATED, VALIDATED, "checked")) is not None
    # The same message again, and one that arrives after the intent has moved on.
    async with db_pool.acquire() as conn, conn.transaction():
        assert await move(conn, Move(intent_id, CREATED, VALIDATED, "checked again")) is None
        assert await move(conn, Move(intent_id, CREATED, FAILED, "late", failure_code="X")) is None
    assert await state(db_pool, intent_id) == (VALIDATED, None)
    assert await timeline(db_pool, intent_id) == [(CREATED, VALIDATED)]
    assert await outbox(db_pool, intent_id) == ["pm:events"]


async def test_a_failure_carries_its_code_and_is_final(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)
    async with db_pool.acquire() as conn, conn.transaction():
        sent = await move(
            conn, Move(intent_id, CREATED, FAILED, "no wallet", failure_code="ACCOUNT_NOT_FOUND")
        )
    assert sent is not None
    event = sent[0].message
    assert isinstance(event, IntentStateChanged) and event.failure_code == "ACCOUNT_NOT_FOUND"
    assert await state(db_pool, intent_id) == (FAILED, "ACCOUNT_NOT_FOUND")
    with pytest.raises(IllegalMoveError):
        Move(intent_id, FAILED, VALIDATED, "resurrect")


async def test_a_rolled_back_move_leaves_no_trace(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db_pool.acquire() as conn, conn.transaction():
            await move(conn, Move(intent_id, CREATED, VALIDATED, "checked"))
            raise Boom
    assert await state(db_pool, intent_id) == (CREATED, None)
    assert await timeline(db_pool, intent_id) == []
    assert await outbox(db_pool, intent_id) == []


@pytest.mark.parametrize(
    ("source", "target", "code"),
    [
        (CREATED, SETTLED, None),
        (AUTHORIZED, VALIDATED, None),
        (SETTLED, FAILED, "X"),
        (CREATED, FAILED, None),
        (CREATED, VALIDATED, "X"),
    ],
)
def test_moves_the_machine_does_not_have(source: str, target: str, code: str | None) -> None:
    with pytest.raises(IllegalMoveError):
        Move("i", source, target, "r", failure_code=code)


async def test_a_move_is_one_statement_that_applies_whole_or_not_at_all(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)
    async with db_pool.acquire() as conn:
        # The legs are not JSON: PostgreSQL refuses the statement, and none of its parts is written.
        with pytest.raises(asyncpg.PostgresError):
            await move(conn, Move(intent_id, CREATED, VALIDATED, "checked", legs=b"{oops"))
        assert await state(db_pool, intent_id) == (CREATED, None)
        assert await timeline(db_pool, intent_id) == []
        assert await outbox(db_pool, intent_id) == []
        # Outside any transaction, a good move applies with its timeline row and its message.
        assert await move(conn, Move(intent_id, CREATED, VALIDATED, "checked")) is not None
    assert await state(db_pool, intent_id) == (VALIDATED, None)
    assert len(await timeline(db_pool, intent_id)) == 1
    assert len(await outbox(db_pool, intent_id)) == 1


async def test_outbox_payloads_are_stored_byte_for_byte(db_pool: Pool) -> None:
    """The statement takes its rows as JSON: what the relay will publish is still exactly what was encoded."""
    intent_id = await new_intent(db_pool)
    reason = 'a "quoted" \\ reason — ✓ \n\t \u2028 \x7f'
    async with db_pool.acquire() as conn:
        sent = await move(conn, Move(intent_id, CREATED, VALIDATED, reason, cause_message_id="m\\1"))
    assert sent is not None
    stored = await db_pool.fetchval("SELECT payload FROM pm.outbox WHERE intent_id = $1", intent_id)
    assert stored == encode(sent[0].message)
    assert msgspec.json.decode(stored, type=IntentStateChanged).reason == reason
    row = await db_pool.fetchrow(
        "SELECT reason, cause_message_id FROM pm.intent_event WHERE intent_id = $1::uuid", intent_id
    )
    assert row is not None and (row["reason"], row["cause_message_id"]) == (reason, "m\\1")


def test_the_sweep_sql_names_the_one_terminal_state_set() -> None:
    match = re.search(r"state NOT IN \(([^)]*)\)", queries.SELECT_STALLED)
    assert match is not None
    assert {s.strip().strip("'") for s in match.group(1).split(",")} == TERMINAL_STATES == TERMINAL


async def test_a_move_via_a_state_writes_both_rows_and_both_events_in_order(db_pool: Pool) -> None:
    intent_id = await new_intent(db_pool)
    async with db_pool.acquire() as conn:
        await move(conn, Move(intent_id, CREATED, VALIDATED, "checked", to_step="transfer"))
        change = Move(intent_id, VALIDATED, SETTLED, "posted at once", from_step="transfer", via=AUTHORIZED)
        sent = await move(conn, change)
        assert sent is not None
        again = await move(conn, change)  # a repeat of the same result: stale, nothing written
    assert again is None
    events = [o.message for o in sent]
    assert [(e.previous, e.state) for e in events if isinstance(e, IntentStateChanged)] == [
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    assert [e.message_id for e in events] == [f"{intent_id}:state:AUTHORIZED", f"{intent_id}:state:SETTLED"]
    assert await state(db_pool, intent_id) == (SETTLED, None)
    assert await timeline(db_pool, intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    assert await outbox(db_pool, intent_id) == ["pm:events"] * 3
    payloads = await db_pool.fetch(
        "SELECT payload FROM pm.outbox WHERE intent_id = $1 ORDER BY id", intent_id
    )
    stored = [msgspec.json.decode(r["payload"], type=IntentStateChanged).state for r in payloads]
    assert stored == [VALIDATED, AUTHORIZED, SETTLED]


@pytest.mark.parametrize(
    ("source", "via", "target"),
    [(VALIDATED, SETTLED, AUTHORIZED), (CREATED, AUTHORIZED, SETTLED), (VALIDATED, VALIDATED, SETTLED)],
)
def test_a_way_through_the_machine_it_does_not_have(source: str, via: str, target: str) -> None:
    with pytest.raises(IllegalMoveError):
        Move(str(uuid.uuid4()), source, target, "no", via=via)
