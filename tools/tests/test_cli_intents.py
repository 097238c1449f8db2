"""`pm intents show`: an intent the gateway recorded, as a table and as JSON; clear errors otherwise."""

from __future__ import annotations

import asyncio
import secrets
import uuid

import msgspec
from typer.testing import CliRunner

from pm_shared.db import Pool
from pm_tools.cli.app import app

PERMISSIONS = '{"operations": ["P2P"], "owners": null, "admin": false}'


async def _intent(db_pool: Pool) -> uuid.UUID:
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
                                  source, target, from_name, comment)
           VALUES ($1, $2, 'k', '\\x00', 'P2P', 'CREATED', 123456, 'THB',
                   '{"kind": "user", "id": "u-1"}', '{"kind": "user", "id": "u-2"}', 'Somchai', 'dinner')""",
        intent_id,
        key_id,
    )
    await db_pool.execute(
        "INSERT INTO pm.intent_event (intent_id, to_state, reason) "
        "VALUES ($1, 'CREATED', 'accepted by the gateway')",
        intent_id,
    )
    return intent_id


async def test_an_intent_is_shown_with_its_timeline(db_pool: Pool, database_url: str) -> None:
    intent_id = await _intent(db_pool)
    runner = CliRunner()
    env = {"PM_DATABASE_URL": database_url}
    # The command runs its own event loop: from this async test, in a thread.
    result = await asyncio.to_thread(runner.invoke, app, ["intents", "show", str(intent_id)], env=env)
    assert result.exit_code == 0, result.output
    assert "1,234.56 THB" in result.output
    assert "user u-1 (Somchai)" in result.output
    assert "accepted by the gateway" in result.output

    as_json = await asyncio.to_thread(
        runner.invoke, app, ["intents", "show", str(intent_id), "--json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    body = msgspec.json.decode(as_json.stdout)
    assert body["id"] == str(intent_id) and body["amount"] == 123456 and body["comment"] == "dinner"
    assert [t["state"] for t in body["timeline"]] == ["CREATED"]


def test_unknown_and_malformed_ids(database_url: str) -> None:
    runner = CliRunner()
    missing = runner.invoke(
        app, ["intents", "show", str(uuid.uuid4())], env={"PM_DATABASE_URL": database_url}
    )
    assert missing.exit_code == 1 and "no intent" in missing.output
    bad = runner.invoke(app, ["intents", "show", "nope"], env={"PM_DATABASE_URL": database_url})
    assert bad.exit_code == 2 and "not an intent id" in bad.output
