"""The admin API of the webhook delivery log against the real gateway and PostgreSQL, with deliveries
and attempts written as the sender writes them (`pm_tools.testing.webhook_rows`): pages newest first
by merchant, endpoint and status, with a cursor; one delivery with its body and attempts; replays
(any status back to PENDING, due now, attempts kept, the actor recorded and logged), refused for a
disabled endpoint; and the refusals of bad parameters, each with its code."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from pm_shared.db import Pool
from pm_tools.testing.gateway import Gateway
from pm_tools.testing.webhook_rows import delivery, leave_nothing_due, merchant, payload


@pytest.fixture(autouse=True)
async def _nothing_left_due(database_url: str) -> AsyncIterator[None]:
    yield
    await leave_nothing_due(database_url)


DELIVERIES = "/v1/admin/webhook-deliveries"


def _problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code, response.text


async def _endpoint(gateway: Gateway, merchant_id: str) -> str:
    response = await gateway.send(
        "POST",
        f"/v1/admin/merchants/{merchant_id}/webhook-endpoints",
        {"url": "https://hooks.example.com/pm", "eventTypes": ["intent.settled", "intent.failed"]},
        key=gateway.admin,
        headers={"Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    endpoint_id: str = response.json()["endpointId"]
    return endpoint_id


async def _get(gateway: Gateway, path: str) -> httpx.Response:
    return await gateway.send("GET", path, key=gateway.admin)


def _ids(response: httpx.Response) -> list[int]:
    assert response.status_code == 200, response.text
    return [d["id"] for d in response.json()["items"]]


async def _row(pool: Pool, delivery_id: int) -> dict[str, Any]:
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT status, attempts, replay_by, next_attempt_at <= now() AS due,"
            " (SELECT count(*) FROM pm.webhook_event_log WHERE delivery_id = $1) AS logged"
            " FROM pm.webhook_delivery WHERE id = $1",
            delivery_id,
        )
    assert row is not None
    return dict(row)


async def test_deliveries_are_listed_newest_first_filtered_and_paged(gateway: Gateway, db_pool: Pool) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    first, second = await _endpoint(gateway, merchant_id), await _endpoint(gateway, merchant_id)
    made = [
        await delivery(db_pool, first, merchant_id, status="DELIVERED", attempts=1),
        await delivery(db_pool, second, merchant_id, status="FAILED", attempts=3),
        await delivery(db_pool, first, merchant_id, status="PENDING", attempts=0),
        await delivery(db_pool, first, merchant_id, status="FAILED", attempts=2, event_type="intent.failed"),
    ]
    other = await merchant(db_pool, gateway.cipher)
    await delivery(db_pool, await _endpoint(gateway, other), other)

    newest = list(reversed(made))
    assert _ids(await _get(gateway, f"{DELIVERIES}?merchant={merchant_id}")) == newest
    assert _ids(await _get(gateway, f"{DELIVERIES}?endpoint={first}")) == [made[3], made[2], made[0]]
    assert _ids(await _get(gateway, f"{DELIVERIES}?merchant={merchant_id}&status=FAILED")) == [
        made[3],
        made[1],
    ]
    assert _ids(await _get(gateway, f"{DELIVERIES}?endpoint={first}&status=PENDING")) == [made[2]]
    assert _ids(await _get(gateway, f"{DELIVERIES}?endpoint={first}&merchant={other}")) == []
    assert _ids(await _get(gateway, f"{DELIVERIES}?merchant=nobody-at-all")) == []
    everyone = _ids(await _get(gateway, f"{DELIVERIES}?limit=200"))
    assert everyone == sorted(everyone, reverse=True) and set(made) <= set(everyone)

    page = (await _get(gateway, f"{DELIVERIES}?merchant={merchant_id}&status=FAILED")).json()
    shown = page["items"][0]
    assert (shown["endpointId"], shown["merchantId"], shown["eventType"]) == (
        first,
        merchant_id,
        "intent.failed",
    )
    assert (shown["status"], shown["attempts"], shown["lastStatusCode"]) == ("FAILED", 2, 500)
    assert shown["webhookId"].startswith("msg_") and shown["replayBy"] is None and "payload" not in shown
    assert page["nextCursor"] is None and page["links"]["next"] is None

    seen: list[int] = []
    path: str | None = f"{DELIVERIES}?merchant={merchant_id}&limit=3"
    while path is not None:
        response = await _get(gateway, path)
        seen += _ids(response)
        path = response.json()["links"]["next"]
        if path is not None:
            assert f"before={response.json()['nextCursor']}" in path and "merchant=" in path
    assert seen == newest


async def test_one_delivery_shows_its_body_and_attempts(gateway: Gateway, db_pool: Pool) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    endpoint_id = await _endpoint(gateway, merchant_id)
    delivery_id = await delivery(db_pool, endpoint_id, merchant_id, status="DELIVERED", attempts=3)
    response = await _get(gateway, f"{DELIVERIES}/{delivery_id}")
    assert response.status_code == 200, response.text
    shown = response.json()
    assert payload("intent.settled", shown["intentId"]).decode() == shown["payload"]
    assert [(a["attempt"], a["trigger"], a["statusCode"]) for a in shown["attemptLog"]] == [
        (1, "initial", 500),
        (2, "retry", 500),
        (3, "retry", 204),
    ]
    assert shown["attemptLog"][0]["responseExcerpt"] == "Internal Server Error"
    assert shown["attemptLog"][0]["latencyMs"] == 12 and shown["deliveredAt"] is not None


async def test_a_replay_makes_any_delivery_due_again_and_is_logged(gateway: Gateway, db_pool: Pool) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    endpoint_id = await _endpoint(gateway, merchant_id)
    for status, attempts in (("FAILED", 8), ("DELIVERED", 1), ("PENDING", 2)):
        delivery_id = await delivery(db_pool, endpoint_id, merchant_id, status=status, attempts=attempts)
        response = await gateway.send("POST", f"{DELIVERIES}/{delivery_id}/replay", key=gateway.admin)
        assert response.status_code == 202, response.text
        assert response.headers["location"] == f"{DELIVERIES}/{delivery_id}"
        replayed = response.json()
        assert (replayed["status"], replayed["attempts"], replayed["replayBy"]) == (
            "PENDING",
            attempts,
            gateway.admin.key_id,
        )
        row = await _row(db_pool, delivery_id)
        assert (row["status"], row["attempts"], row["due"], row["logged"]) == ("PENDING", attempts, True, 1)
    async with db_pool.acquire() as conn:
        logged = await conn.fetchrow(
            "SELECT endpoint_id, action, actor FROM pm.webhook_event_log WHERE delivery_id = $1", delivery_id
        )
    assert logged is not None and tuple(logged) == (endpoint_id, "replayed", gateway.admin.key_id)


async def test_a_replay_is_refused_for_a_disabled_endpoint_and_changes_nothing(
    gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    endpoint_id = await _endpoint(gateway, merchant_id)
    delivery_id = await delivery(db_pool, endpoint_id, merchant_id, status="FAILED", attempts=2)
    disabled = await gateway.send(
        "POST", f"/v1/admin/webhook-endpoints/{endpoint_id}/disable", key=gateway.admin
    )
    assert disabled.status_code == 200, disabled.text
    before = await _row(db_pool, delivery_id)
    replay = f"{DELIVERIES}/{delivery_id}/replay"
    _problem(await gateway.send("POST", replay, key=gateway.admin), 409, "webhook_endpoint_disabled")
    _problem(await gateway.send("POST", replay, key=gateway.user), 403, "forbidden_admin")
    assert await _row(db_pool, delivery_id) == before
    assert before["status"] == "FAILED" and before["logged"] == 0
    await gateway.send("POST", f"/v1/admin/webhook-endpoints/{endpoint_id}/enable", key=gateway.admin)
    assert (await gateway.send("POST", replay, key=gateway.admin)).status_code == 202


async def test_bad_parameters_and_unknown_deliveries_are_refused_with_codes(gateway: Gateway) -> None:
    for query, code in (
        ("limit=0", "limit_invalid"),
        ("limit=201", "limit_invalid"),
        ("limit=99999999999999999999999", "limit_invalid"),
        ("limit=1.5", "limit_invalid"),
        ("limit=%EF%BC%91", "limit_invalid"),  # a full-width digit one
        ("before=0", "before_invalid"),
        ("before=-4", "before_invalid"),
        ("before=9223372036854775808", "before_invalid"),
        ("before=abc", "before_invalid"),
        ("status=DONE", "delivery_status_invalid"),
        ("status=failed", "delivery_status_invalid"),
        ("merchant=bad%20id", "merchant_invalid"),
        ("merchant=%00", "merchant_invalid"),
        ("endpoint=ep_123", "webhook_endpoint_invalid"),
        ("endpoint=" + "e" * 5000, "webhook_endpoint_invalid"),
    ):
        _problem(await _get(gateway, f"{DELIVERIES}?{query}"), 400, code)
    for bad in ("0", "-1", "abc", "9223372036854775808", "1e3", "999999999999"):
        _problem(await _get(gateway, f"{DELIVERIES}/{bad}"), 404, "webhook_delivery_not_found")
        response = await gateway.send("POST", f"{DELIVERIES}/{bad}/replay", key=gateway.admin)
        _problem(response, 404, "webhook_delivery_not_found")
    _problem(await gateway.send("GET", DELIVERIES, key=gateway.user), 403, "forbidden_admin")
    _problem(await gateway.send("GET", f"{DELIVERIES}/1", key=gateway.user), 403, "forbidden_admin")
    _problem(
        await gateway.send("POST", f"{DELIVERIES}/1/replay", b"{}", key=gateway.admin), 400, "body_unexpected"
    )


async def test_a_replay_waits_while_a_sender_is_attempting_the_delivery(
    gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    endpoint_id = await _endpoint(gateway, merchant_id)
    delivery_id = await delivery(db_pool, endpoint_id, merchant_id, status="PENDING", attempts=1)
    claim = "UPDATE pm.webhook_delivery SET claimed_until = now() + make_interval(secs => $2) WHERE id = $1"
    async with db_pool.acquire() as conn:  # as a sender's claim leaves it while it attempts
        await conn.execute(claim, delivery_id, 30)
    before = await _row(db_pool, delivery_id)
    response = await gateway.send("POST", f"{DELIVERIES}/{delivery_id}/replay", key=gateway.admin)
    _problem(response, 409, "webhook_delivery_in_flight")
    assert 1 <= int(response.headers["retry-after"]) <= 30
    assert await _row(db_pool, delivery_id) == before and before["replay_by"] is None
    async with db_pool.acquire() as conn:  # the claim lapsed (a killed sender's does)
        await conn.execute(claim, delivery_id, -1)
    response = await gateway.send("POST", f"{DELIVERIES}/{delivery_id}/replay", key=gateway.admin)
    assert response.status_code == 202 and response.json()["replayBy"] == gateway.admin.key_id
