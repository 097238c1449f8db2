"""Payment requests through the gateway: a merchant asks (idempotently, within its mini-app's rules),
the user answers through `/v1/me` with the front door's headers; a confirmation makes exactly one
MINIAPP_CHARGE intent, and nobody but that user, in time, can confirm it. (The charge settling is the
fleet's test: tests/test_merchant_payments.py.)"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from pm_shared import db
from pm_tools.testing.gateway import PROXY_SECRET, Gateway, Key


@dataclass(frozen=True)
class Shop:
    merchant_id: str
    miniapp_id: str
    key: Key


@pytest.fixture
async def shop(gateway: Gateway) -> Shop:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    made = await gateway.send(
        "POST",
        "/v1/admin/merchants",
        {"merchantId": merchant_id, "name": "Bakery", "currencies": ["THB"]},
        key=gateway.admin,
        headers={"Idempotency-Key": merchant_id},
    )
    assert made.status_code in (201, 202), made.text
    app = {
        "miniappId": f"{merchant_id}-app",
        "merchantId": merchant_id,
        "name": "Bakery",
        "operations": ["MINIAPP_CHARGE"],
        "maxCharge": {"THB": 50_000},
    }
    assert (await gateway.send("POST", "/v1/admin/miniapps", app, key=gateway.admin)).status_code == 201
    return Shop(merchant_id, f"{merchant_id}-app", Key(made.json()["keyId"], made.json()["secret"]))


def asking(shop: Shop, user: str, amount: int = 1_500, **changes: Any) -> dict[str, Any]:
    return {"miniappId": shop.miniapp_id, "userId": user, "amount": amount, "currency": "THB", **changes}


async def ask(gateway: Gateway, shop: Shop, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return await gateway.send("POST", "/v1/payment-requests", body, key=shop.key, headers=headers)


async def as_user(
    gateway: Gateway, method: str, path: str, user: str | None, *, secret: str | None = PROXY_SECRET
) -> httpx.Response:
    headers = {}
    if user is not None:
        headers["X-PM-User"] = user
    if secret is not None:
        headers["X-PM-Proxy-Secret"] = secret
    return await gateway.http.request(method, gateway.url + path, headers=headers)


async def answer(gateway: Gateway, path: str, verb: str, user: str) -> httpx.Response:
    return await as_user(gateway, "POST", f"{path}/{verb}", user)


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


async def intents_of(database_url: str, request_id: str) -> int:
    conn = await db.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pm.intent WHERE idempotency_key = $1", f"payment-request:{request_id}"
        )
        return count
    finally:
        await conn.close()


async def test_a_request_is_idempotent_and_checked_like_a_charge(gateway: Gateway, shop: Shop) -> None:
    first = await ask(gateway, shop, asking(shop, "u-1"), key="ask-1")
    assert first.status_code == 201, first.text
    made = first.json()
    assert (made["status"], made["merchantId"], made["intentId"]) == ("OPEN", shop.merchant_id, None)
    again = await ask(gateway, shop, asking(shop, "u-1"), key="ask-1")
    assert again.json()["id"] == made["id"] and again.headers["idempotent-replayed"] == "true"
    assert code(await ask(gateway, shop, asking(shop, "u-2"), key="ask-1")) == (409, "idempotency_key_reused")
    assert code(await ask(gateway, shop, asking(shop, "u-1", 50_001))) == (403, "over_miniapp_cap")
    other = asking(shop, "u-1", miniappId="someone-elses-app")
    assert code(await ask(gateway, shop, other)) == (403, "forbidden_miniapp")
    by_admin = await gateway.send(
        "POST",
        "/v1/payment-requests",
        asking(shop, "u-1"),
        key=gateway.admin,
        headers={"Idempotency-Key": "x"},
    )
    assert code(by_admin) == (403, "forbidden_operation")
    shown = await gateway.send("GET", f"/v1/payment-requests/{made['id']}", key=shop.key)
    assert shown.status_code == 200 and shown.json()["id"] == made["id"]


async def test_only_the_front_door_speaks_for_a_user(gateway: Gateway, shop: Shop) -> None:
    path = "/v1/me/payment-requests"
    assert code(await as_user(gateway, "GET", path, "u-1", secret=None)) == (401, "proxy_secret_invalid")
    assert code(await as_user(gateway, "GET", path, "u-1", secret="guess")) == (401, "proxy_secret_invalid")
    assert code(await as_user(gateway, "GET", path, None)) == (401, "user_missing")
    assert code(await as_user(gateway, "GET", path, "..")) == (401, "user_invalid")
    made = (await ask(gateway, shop, asking(shop, "u-list"))).json()
    mine = await as_user(gateway, "GET", path, "u-list")
    assert mine.status_code == 200 and [r["id"] for r in mine.json()] == [made["id"]]
    assert (await as_user(gateway, "GET", path, "u-other")).json() == []
    assert code(await as_user(gateway, "GET", "/v1/me/wallets", "u-list")) == (404, "wallet_not_found")
    history = await as_user(gateway, "GET", "/v1/me/history", "u-list")
    assert history.status_code == 200 and history.json()["items"] == []
    spoofed = await as_user(gateway, "GET", "/v1/me/wallets", "u-list", secret=None)
    assert code(spoofed) == (401, "proxy_secret_invalid")


async def test_a_confirmation_makes_exactly_one_charge(
    gateway: Gateway, shop: Shop, database_url: str
) -> None:
    made = (await ask(gateway, shop, asking(shop, "u-pay", description="2 croissants"))).json()
    path = f"/v1/me/payment-requests/{made['id']}"
    assert code(await answer(gateway, path, "confirm", "u-thief")) == (
        404,
        "payment_request_not_found",
    )
    confirmed = await answer(gateway, path, "confirm", "u-pay")
    assert confirmed.status_code == 202, confirmed.text
    intent = confirmed.json()
    assert (intent["type"], intent["amount"], intent["miniappId"]) == (
        "MINIAPP_CHARGE",
        1_500,
        shop.miniapp_id,
    )
    assert intent["from"] == {"kind": "user", "id": "u-pay"} and intent["comment"] == "2 croissants"
    again = await answer(gateway, path, "confirm", "u-pay")
    assert again.status_code == 202 and again.json()["id"] == intent["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert await intents_of(database_url, made["id"]) == 1
    assert code(await answer(gateway, path, "decline", "u-pay")) == (
        409,
        "payment_request_confirmed",
    )
    shown = (await gateway.send("GET", f"/v1/payment-requests/{made['id']}", key=shop.key)).json()
    assert (shown["status"], shown["intentId"]) == ("CONFIRMED", intent["id"])
    # The merchant sees the charge as its own intent.
    assert (await gateway.send("GET", f"/v1/intents/{intent['id']}", key=shop.key)).status_code == 200


async def test_declined_and_expired_requests_cannot_be_confirmed(
    gateway: Gateway, shop: Shop, database_url: str
) -> None:
    declined = (await ask(gateway, shop, asking(shop, "u-no"))).json()
    path = f"/v1/me/payment-requests/{declined['id']}"
    said = await answer(gateway, path, "decline", "u-no")
    assert said.status_code == 200 and said.json()["status"] == "DECLINED"
    assert (await answer(gateway, path, "decline", "u-no")).status_code == 200  # a repeat
    assert code(await answer(gateway, path, "confirm", "u-no")) == (
        409,
        "payment_request_declined",
    )

    late = (await ask(gateway, shop, asking(shop, "u-late"))).json()
    conn = await db.connect(database_url)
    try:
        await conn.execute(
            "UPDATE pm.payment_request SET expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(late["id"]),
        )
    finally:
        await conn.close()
    path = f"/v1/me/payment-requests/{late['id']}"
    assert code(await answer(gateway, path, "confirm", "u-late")) == (
        409,
        "payment_request_expired",
    )
    assert code(await answer(gateway, path, "decline", "u-late")) == (
        409,
        "payment_request_expired",
    )
    assert await intents_of(database_url, late["id"]) == 0
    assert await intents_of(database_url, declined["id"]) == 0


async def test_a_merchant_deactivated_since_it_asked_is_not_paid(gateway: Gateway, shop: Shop) -> None:
    paid = (await ask(gateway, shop, asking(shop, "u-paid"))).json()
    first = await answer(gateway, f"/v1/me/payment-requests/{paid['id']}", "confirm", "u-paid")
    assert first.status_code == 202
    made = (await ask(gateway, shop, asking(shop, "u-wait"))).json()
    off = await gateway.send("POST", f"/v1/admin/merchants/{shop.merchant_id}/deactivate", key=gateway.admin)
    assert off.status_code == 200
    path = f"/v1/me/payment-requests/{made['id']}/confirm"
    assert code(await as_user(gateway, "POST", path, "u-wait")) == (403, "merchant_inactive")
    # A request confirmed before still answers with its intent.
    again = await answer(gateway, f"/v1/me/payment-requests/{paid['id']}", "confirm", "u-paid")
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
