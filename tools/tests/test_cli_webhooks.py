"""`pm webhooks` against a real database: an endpoint added (again: the same one and secret), listed,
shown with its changes and their actor, rotated, disabled and enabled; the URL policy read from the
gateway's variables; deliveries (written as the sender writes them) listed, shown with their
attempts and replayed, after a confirmation or with --yes; refusals with their exit codes."""

from __future__ import annotations

import asyncio
import getpass
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import standardwebhooks
from typer.testing import CliRunner

from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.webhooks import endpoints, signing
from pm_tools.cli.app import app
from pm_tools.devenv.envfile import new_key_encryption_key
from pm_tools.testing.webhook_rows import delivery, leave_nothing_due, merchant


@pytest.fixture(autouse=True)
async def _nothing_left_due(database_url: str) -> AsyncIterator[None]:
    yield
    await leave_nothing_due(database_url)


URL = "https://hooks.example.com/pm"
ACTOR = f"pm webhooks ({getpass.getuser()})"


@pytest.fixture(scope="module")
def key() -> str:
    return new_key_encryption_key()


async def _pm(
    database_url: str, key: str, *args: str, stdin: str | None = None, **env: str
) -> tuple[int, str]:
    variables: dict[str, str | None] = {
        "PM_DATABASE_URL": database_url,
        "PM_KEY_ENCRYPTION_KEY": key,
        "PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS": None,
        "PM_GATEWAY_WEBHOOK_ALLOW_HTTP": None,
        **env,
    }
    result = await asyncio.to_thread(CliRunner().invoke, app, ["webhooks", *args], input=stdin, env=variables)
    return result.exit_code, result.output


def _secret(out: str) -> str:
    [line] = [line for line in out.splitlines() if line.startswith("secret: ")]
    return line.removeprefix("secret: ")


async def test_an_endpoint_is_added_again_the_same_rotated_disabled_and_enabled(
    db_pool: Pool, database_url: str, key: str
) -> None:
    merchant_id = await merchant(db_pool, Cipher.from_setting(key))
    args = ("add", merchant_id, URL, "--event", "intent.settled", "--event", "refund.settled")
    code, out = await _pm(database_url, key, *args)
    assert code == 0, out
    endpoint_id = out.split(":", 1)[0]
    secret = _secret(out)
    assert endpoint_id.startswith("ep_") and secret.startswith("whsec_")
    code, again = await _pm(database_url, key, *args)
    assert (code, again.split(":", 1)[0], _secret(again)) == (0, endpoint_id, secret), again
    assert "existed already" in again

    # The secret printed is the one the sender reads back (decrypted) and signs with.
    async with db_pool.acquire() as conn:
        in_force = await endpoints.signing_secrets(conn, Cipher.from_setting(key), endpoint_id)
    body = b'{"type":"intent.settled","timestamp":"2026-12-07T10:00:00Z","data":{}}'
    headers = signing.headers(in_force, "msg_cli", int(time.time()), body)
    assert standardwebhooks.Webhook(secret).verify(body, headers)["type"] == "intent.settled"

    code, out = await _pm(database_url, key, "endpoints", merchant_id)
    assert code == 0 and endpoint_id in out and "intent.settled, refund.settled" in out, out
    code, out = await _pm(database_url, key, "rotate", endpoint_id, "--grace", "0")
    assert code == 0 and _secret(out) != secret, out
    code, out = await _pm(database_url, key, "disable", endpoint_id, "--reason", "moving house")
    assert (code, out.strip()) == (0, f"{endpoint_id}: DISABLED (moving house)"), out
    code, out = await _pm(database_url, key, "enable", endpoint_id)
    assert (code, out.strip()) == (0, f"{endpoint_id}: ENABLED"), out
    code, out = await _pm(database_url, key, "endpoint", endpoint_id)
    assert code == 0, out
    for action in ("created", "rotated", "disabled", "enabled"):
        assert f"{action} by {ACTOR}" in out, out
    code, out = await _pm(database_url, key, *args)  # rotated since: the creation's secret is not shown
    assert code == 0 and "not shown" in out and secret not in out, out


async def test_adding_follows_the_gateway_s_url_policy_and_refuses_bad_input(
    db_pool: Pool, database_url: str, key: str
) -> None:
    merchant_id = await merchant(db_pool, Cipher.from_setting(key))
    local = "http://127.0.0.1:9999/hook"
    code, out = await _pm(database_url, key, "add", merchant_id, local, "--event", "intent.failed")
    assert code == 2 and "webhook_url_https_required" in out, out
    allow = {"PM_GATEWAY_WEBHOOK_ALLOW_HTTP": "true", "PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
    code, out = await _pm(database_url, key, "add", merchant_id, local, "--event", "intent.failed", **allow)
    assert code == 0, out
    refusals: list[tuple[tuple[str, ...], dict[str, str], int, str]] = [
        (("add", merchant_id, "https://10.0.0.1/", "--event", "intent.failed"), allow, 2, "not_allowed"),
        (("add", merchant_id, URL, "--event", "intent.created"), {}, 2, "intent.created"),
        (
            ("add", merchant_id, "https://u:p@x.example/", "--event", "intent.failed"),
            {},
            2,
            "webhook_url_invalid",
        ),
        (("add", "nobody-at-all", URL, "--event", "intent.failed"), {}, 1, "no merchant"),
        (("add", "bad id", URL, "--event", "intent.failed"), {}, 2, "merchant id"),
        (
            ("add", merchant_id, local, "--event", "intent.failed"),
            {"PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "x"},
            2,
            "NETWORKS",
        ),
        (("rotate", "ep_" + "0" * 24), {}, 1, "no webhook endpoint"),
        (("disable", "not-an-endpoint"), {}, 1, "no webhook endpoint"),
        (("enable", "ep_\x00"), {}, 1, "no webhook endpoint"),
    ]
    for args, env, expected, said in refusals:
        code, out = await _pm(database_url, key, *args, **env)
        assert code == expected and said in out, (args, out)
    first = ("add", merchant_id, URL, "--event", "intent.failed", "--idempotency-key", "k-1")
    assert (await _pm(database_url, key, *first))[0] == 0
    code, out = await _pm(database_url, key, *first[:-3], "intent.settled", "--idempotency-key", "k-1")
    assert code == 1 and "idempotency_key_reused" in out, out
    code, out = await _pm(database_url, "not a key", *first)
    assert code == 2 and "PM_KEY_ENCRYPTION_KEY" in out, out


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


async def test_deliveries_are_listed_shown_and_replayed(db_pool: Pool, database_url: str, key: str) -> None:
    merchant_id = await merchant(db_pool, Cipher.from_setting(key))
    code, out = await _pm(database_url, key, "add", merchant_id, URL, "--event", "intent.settled")
    endpoint_id = out.split(":", 1)[0]
    failed = await delivery(db_pool, endpoint_id, merchant_id, status="FAILED", attempts=2)
    done = await delivery(db_pool, endpoint_id, merchant_id, status="DELIVERED", attempts=1)

    code, out = await _pm(database_url, key, "deliveries", "--merchant", merchant_id, "--json")
    assert code == 0 and [d["id"] for d in _lines(out)] == [done, failed], out
    code, out = await _pm(
        database_url, key, "deliveries", "--endpoint", endpoint_id, "--status", "failed", "--json"
    )
    assert [(d["id"], d["attempts"], d["lastStatusCode"]) for d in _lines(out)] == [(failed, 2, 500)], out
    code, out = await _pm(database_url, key, "deliveries", "--merchant", merchant_id)
    assert code == 0 and str(failed) in out and "FAILED" in out, out
    code, out = await _pm(database_url, key, "show", str(failed), "--json")
    shown = json.loads(out)
    assert [(a["attempt"], a["trigger"]) for a in shown["attemptLog"]] == [(1, "initial"), (2, "retry")]
    assert json.loads(shown["payload"])["type"] == "intent.settled"
    code, out = await _pm(database_url, key, "show", str(failed))
    assert code == 0 and "attempts" in out and "Internal Server Error" in out, out

    code, out = await _pm(database_url, key, "replay", str(failed), stdin="n\n")
    assert code == 1 and "not replayed" in out, out
    code, out = await _pm(database_url, key, "show", str(failed), "--json")
    assert (json.loads(out)["status"], json.loads(out)["replayBy"]) == ("FAILED", None)
    code, out = await _pm(database_url, key, "replay", str(failed), stdin="y\n")
    assert code == 0 and f"replay by {ACTOR}" in out, out
    code, out = await _pm(database_url, key, "replay", str(done), "--yes")
    assert code == 0, out
    code, out = await _pm(database_url, key, "deliveries", "--endpoint", endpoint_id, "--json")
    assert {(d["status"], d["replayBy"]) for d in _lines(out)} == {("PENDING", ACTOR)}

    await _pm(database_url, key, "disable", endpoint_id)
    code, out = await _pm(database_url, key, "replay", str(done), "--yes")
    assert code == 1 and "disabled" in out, out
    for args, expected in (
        (("replay", "999999999999", "--yes"), 1),
        (("show", "999999999999"), 1),
        (("show", "0"), 2),
        (("deliveries", "--status", "DONE"), 2),
        (("deliveries", "--endpoint", "ep_1"), 2),
        (("deliveries", "--merchant", "a b"), 2),
    ):
        assert (await _pm(database_url, key, *args))[0] == expected, args
