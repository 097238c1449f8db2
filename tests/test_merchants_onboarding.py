"""Merchant onboarding across crashes, with real processes: the gateway and the ledger-writer are killed
(SIGKILL) while an onboarding is under way, and a repeat of the request with the same Idempotency-Key
finishes the same merchant: one row, one service key, one ledger account per currency (code 2, on
each currency's ledger), and the merchant's key signs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.ledger import chart, ids, open_ledger
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, Proc, admin_key, delete_streams, wait_ready
from pm_tools.testing.saga import WRITER_LEASE_MS

pytestmark = pytest.mark.slow
STREAMS = ("pm:intents", "pm:events", "pm:ledger:commands", "pm:ledger:results")


@dataclass
class Setup:
    fleet: Fleet
    lease: str
    auth: PMAuth
    gateway: Proc


@pytest.fixture
async def setup(fleet: Fleet, redis: Redis) -> AsyncIterator[Setup]:
    await delete_streams(redis, *STREAMS)
    lease = f"test:merchants:ledger-writer:lease:{uuid.uuid4().hex[:8]}"
    key_id, secret = await admin_key(fleet.database_url)
    # Started, not waited for: each test starts its first ledger-writer alongside, then waits for both.
    gateway = fleet.start("gateway", env={"PM_GATEWAY_WALLET_OPEN_WAIT_S": "0.5"})
    try:
        yield Setup(fleet, lease, PMAuth(key_id, secret), gateway)
    finally:
        await redis.delete(lease)


def ledger_writer(setup: Setup) -> Proc:
    """A ledger-writer on the test's lease, with the saga tests' shorter lease (4 s, not 10 s): a
    writer killed while it held it stands in its successor's way that long."""
    env = {"PM_LEDGER_WRITER_LEASE_KEY": setup.lease, "PM_LEDGER_WRITER_LEASE_MS": WRITER_LEASE_MS}
    return setup.fleet.start("ledger-writer", env=env)


async def onboard(setup: Setup, merchant_id: str, key: str) -> httpx.Response:
    body = {"merchantId": merchant_id, "name": "Noodle Bar", "currencies": ["THB", "USD"]}
    async with httpx.AsyncClient(auth=setup.auth, timeout=30) as http:
        return await http.post(
            setup.gateway.url("/v1/admin/merchants"), json=body, headers={"Idempotency-Key": key}
        )


async def stored(database_url: str, merchant_id: str) -> dict[str, Any]:
    conn = await db.connect(database_url)
    try:
        return {
            "rows": await conn.fetchval(
                "SELECT count(*) FROM pm.merchant WHERE merchant_id = $1", merchant_id
            ),
            "keys": await conn.fetchval(
                "SELECT count(*) FROM pm.service_key WHERE permissions ->> 'merchant' = $1", merchant_id
            ),
            "mapped": await conn.fetchval(
                "SELECT count(*) FROM pm.tb_account_map WHERE owner_kind = 'merchant' AND owner_id = $1",
                merchant_id,
            ),
        }
    finally:
        await conn.close()


async def check_finished(setup: Setup, merchant_id: str, answer: httpx.Response) -> None:
    assert answer.status_code == 201, answer.text
    made = answer.json()
    assert all(a["opened"] for a in made["accounts"]) and len(made["accounts"]) == 2
    assert await stored(setup.fleet.database_url, merchant_id) == {"rows": 1, "keys": 1, "mapped": 2}
    ledger = await open_ledger(db_ledger_url(setup.fleet.database_url), readonly=True)
    try:
        for currency in ("THB", "USD"):
            number = chart.ledger_of(currency)
            account_id = ids.account_id("merchant", merchant_id, number, int(chart.Code.MERCHANT))
            [account] = await ledger.lookup_accounts([account_id])
            assert (account.ledger, account.code) == (number, int(chart.Code.MERCHANT))
            assert f"{account_id:032x}" in {a["accountId"] for a in made["accounts"]}
    finally:
        await ledger.close()
    async with httpx.AsyncClient(auth=PMAuth(made["keyId"], made["secret"]), timeout=30) as http:
        assert (await http.get(setup.gateway.url("/v1/intents"))).status_code == 200


def db_ledger_url(database_url: str) -> str:
    return "embedded+" + database_url


@pytest.mark.parametrize("kill_after_s", [0.005, 0.02, 0.05, 0.1])
async def test_a_gateway_killed_mid_onboarding_leaves_one_merchant_a_repeat_finishes(
    setup: Setup, kill_after_s: float
) -> None:
    writer = ledger_writer(setup)
    await wait_ready(setup.gateway, writer)
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    # Killed while the request is in flight, at a few points (before the commit, after it, while the
    # accounts are being opened: which one each delay hits varies): never a second key.
    attempt = asyncio.create_task(onboard(setup, merchant_id, "onboard-kill-gw"))
    await asyncio.sleep(kill_after_s)
    setup.gateway.popen.kill()
    await asyncio.gather(attempt, return_exceptions=True)
    assert (await stored(setup.fleet.database_url, merchant_id))["keys"] <= 1
    setup.gateway = setup.fleet.start("gateway", env={"PM_GATEWAY_WALLET_OPEN_WAIT_S": "5"})
    await setup.gateway.wait_ready()
    await check_finished(setup, merchant_id, await onboard(setup, merchant_id, "onboard-kill-gw"))


async def test_accounts_the_ledger_writer_did_not_open_are_opened_by_a_repeat(setup: Setup) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    # A ledger-writer provisions its streams, then dies (SIGKILL): the onboarding commits the row and
    # the key, and the accounts' command waits on the stream.
    gone = ledger_writer(setup)
    await wait_ready(setup.gateway, gone)
    gone.popen.kill()
    await gone.wait_exit(10)
    first = await onboard(setup, merchant_id, "onboard-no-writer")
    assert first.status_code == 202, first.text
    assert await stored(setup.fleet.database_url, merchant_id) == {"rows": 1, "keys": 1, "mapped": 0}
    # A ledger-writer that starts and is killed at once, maybe mid-command; then one that stays.
    doomed = ledger_writer(setup)
    await asyncio.sleep(0.5)
    doomed.popen.kill()
    await doomed.wait_exit(10)
    writer = ledger_writer(setup)
    await writer.wait_ready()

    async def finished() -> bool:
        return (await onboard(setup, merchant_id, "onboard-no-writer")).status_code == 201

    await eventually(finished, timeout=30, what="a repeat of the onboarding answers 201")
    again = await onboard(setup, merchant_id, "onboard-no-writer")
    assert again.headers["idempotent-replayed"] == "true"
    assert (again.json()["keyId"], again.json()["secret"]) == (first.json()["keyId"], first.json()["secret"])
    await check_finished(setup, merchant_id, again)
