"""`POST /v1/me/intents` and `GET /v1/me/intents/{id}` through the gateway, with the front door's
headers: a user pays from their own wallet only (the body cannot name a payer), Idempotency-Keys are
the user's own, a user reads only intents they pay or are paid by, and nothing is written without the
proxy secret. (The payment settling is the fleet's test: tests/test_merchant_payments.py.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from pm_shared import db
from pm_tools.testing.gateway import PROXY_SECRET, Gateway


def front_door(
    user: str | None, *, secret: str | None = PROXY_SECRET, key: str | None = None
) -> dict[str, str]:
    headers = {}
    if user is not None:
        headers["X-PM-User"] = user
    if secret is not None:
        headers["X-PM-Proxy-Secret"] = secret
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def p2p(payee: str, amount: int = 2_500, **changes: Any) -> dict[str, Any]:
    return {
        "type": "P2P",
        "amount": amount,
        "currency": "THB",
        "to": {"kind": "user", "id": payee},
        **changes,
    }


async def pay(gateway: Gateway, user: str | None, body: Any, **headers: Any) -> httpx.Response:
    return await gateway.http.post(
        gateway.url + "/v1/me/intents", json=body, headers=front_door(user, **headers)
    )


async def read(gateway: Gateway, user: str, intent_id: str) -> httpx.Response:
    return await gateway.http.get(gateway.url + f"/v1/me/intents/{intent_id}", headers=front_door(user))


async def count(database_url: str) -> int:
    conn = await db.connect(database_url)
    try:
        n: int = await conn.fetchval("SELECT count(*) FROM pm.intent")
        return n
    finally:
        await conn.close()


def user() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_a_user_pays_from_their_own_wallet_and_reads_it_back(gateway: Gateway) -> None:
    payer, payee, stranger = user(), user(), user()
    made = await pay(gateway, payer, p2p(payee, comment="lunch"), key="k-1")
    assert made.status_code == 202, made.text
    intent = made.json()
    assert (intent["type"], intent["from"], intent["to"]) == (
        "P2P",
        {"kind": "user", "id": payer},
        {"kind": "user", "id": payee},
    )
    # The answer links where the user can read it; the signed /v1/intents/{id} is not theirs to call.
    assert made.headers["Location"] == intent["links"]["self"] == f"/v1/me/intents/{intent['id']}"
    for reader in (payer, payee):
        seen = await read(gateway, reader, intent["id"])
        assert (seen.status_code, seen.json()["id"]) == (200, intent["id"]), seen.text
    hidden = await read(gateway, stranger, intent["id"])
    assert (hidden.status_code, hidden.json()["code"]) == (404, "intent_not_found")
    missing = await read(gateway, payer, str(uuid.uuid4()))
    assert (missing.status_code, missing.json()["code"]) == (404, "intent_not_found")


async def test_idempotency_keys_are_each_users_own(gateway: Gateway, database_url: str) -> None:
    alice, bob, carol = user(), user(), user()
    first = await pay(gateway, alice, p2p(carol), key="same")
    again = await pay(gateway, alice, p2p(carol), key="same")
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    # Another user's identical key is another intent: keys never collide across users.
    bobs = await pay(gateway, bob, p2p(carol), key="same")
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]
    before = await count(database_url)
    reused = await pay(gateway, alice, p2p(carol, amount=9_999), key="same")
    assert (reused.status_code, reused.json()["code"]) == (409, "idempotency_key_reused")
    assert await count(database_url) == before


async def test_what_a_user_may_not_send_is_refused_and_writes_nothing(
    gateway: Gateway, database_url: str
) -> None:
    alice, bob = user(), user()
    before = await count(database_url)
    cases: list[tuple[dict[str, str | None] | None, Any, tuple[int, str]]] = [
        # The payer is the signed-in user: a body naming one is refused, not obeyed.
        (None, {**p2p(bob), "from": {"kind": "user", "id": bob}}, (422, "validation_failed")),
        (None, p2p(alice), (422, "invalid_parties")),  # paying themselves
        (None, {**p2p(bob), "type": "ADJUSTMENT"}, (422, "validation_failed")),
        (None, {**p2p(bob), "type": "SBP_TOPUP"}, (422, "validation_failed")),
        (None, {**p2p(bob), "to": {"kind": "operator", "id": "equity"}}, (422, "validation_failed")),
        (None, {**p2p(bob), "type": "PROMPTPAY_WITHDRAWAL"}, (422, "invalid_parties")),
        ({"secret": "wrong"}, p2p(bob), (401, "proxy_secret_invalid")),
        ({"secret": None}, p2p(bob), (401, "proxy_secret_invalid")),
        ({"key": None}, p2p(bob), (400, "idempotency_key_missing")),
        ({"key": "x" * 129}, p2p(bob), (400, "idempotency_key_invalid")),
    ]
    for changes, body, expected in cases:
        headers: dict[str, Any] = {"key": uuid.uuid4().hex, **(changes or {})}
        refused = await pay(gateway, alice, body, **headers)
        assert (refused.status_code, refused.json()["code"]) == expected, (changes, body, refused.text)
    no_user = await pay(gateway, None, p2p(bob), key="k")
    assert (no_user.status_code, no_user.json()["code"]) == (401, "user_missing")
    assert await count(database_url) == before


async def test_a_promptpay_withdrawal_goes_to_the_users_own_payee(gateway: Gateway) -> None:
    alice = user()
    body = {
        "type": "PROMPTPAY_WITHDRAWAL",
        "amount": 10_000,
        "currency": "THB",
        "to": {"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"},
        "toName": "Somchai",
    }
    made = await pay(gateway, alice, body, key="rent")
    assert made.status_code == 202, made.text
    assert made.json()["from"] == {"kind": "user", "id": alice}
