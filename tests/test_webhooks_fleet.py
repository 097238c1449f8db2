"""Merchant webhooks end to end (gateway, orchestrator, ledger-writer, reconciler and pm-webhooks as
processes): a user confirms a merchant's payment request, the charge settles, and the merchant's
endpoint receives `payment_request.confirmed` and `intent.settled`, signed so the `standardwebhooks`
package accepts them, showing the intent as the API does; a credit the merchant cannot fund fails and
the endpoint receives `intent.failed`.

Endpoints are inserted as the admin API stores them (`pm_tools.testing.webhooks`).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import standardwebhooks

from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_tools.testing import webhooks as kit
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import KEY_ENCRYPTION_KEY
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.saga import CURRENCY, SagaFleet, fund, module_saga, open_wallet

pytestmark = pytest.mark.slow

SHOWN = ("id", "type", "status", "amount", "currency", "from", "to", "fees", "failureCode", "miniappId")


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("webhooks"))) as running:
        yield running


async def onboard(saga: SagaFleet, merchant_id: str) -> tuple[str, str]:
    async with saga.http(saga.admin) as admin:
        made = await admin.post(
            "/v1/admin/merchants",
            json={"merchantId": merchant_id, "name": f"Shop {merchant_id}", "currencies": [CURRENCY]},
            headers={"Idempotency-Key": f"onboard-{merchant_id}"},
        )
        assert made.status_code == 201, made.text
        app = await admin.post(
            "/v1/admin/miniapps",
            json={
                "miniappId": f"{merchant_id}-app",
                "merchantId": merchant_id,
                "name": "Shop",
                "operations": ["MINIAPP_CHARGE", "MINIAPP_CREDIT"],
                "maxCharge": {CURRENCY: 50_000},
            },
        )
        assert app.status_code == 201, app.text
    return made.json()["keyId"], made.json()["secret"]


async def add_endpoint(saga: SagaFleet, merchant_id: str, url: str) -> kit.Endpoint:
    conn = await db.connect(saga.database_url)
    try:
        types = ["intent.settled", "intent.failed", "payment_request.confirmed"]
        return await kit.endpoint(conn, Cipher.from_setting(KEY_ENCRYPTION_KEY), merchant_id, url, types)
    finally:
        await conn.close()


async def test_a_merchant_receives_its_events_signed_and_as_the_api_shows_them(saga: SagaFleet) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    user = f"u-{uuid.uuid4().hex[:8]}"
    key_id, secret = await onboard(saga, merchant_id)
    async with kit.Receiver() as receiver:
        endpoint = await add_endpoint(saga, merchant_id, receiver.url)
        async with saga.client(saga.admin) as pm:
            await open_wallet(pm, user)
            await fund(pm, user, 10_000)
        async with httpx.AsyncClient(base_url=saga.url, auth=PMAuth(key_id, secret), timeout=40.0) as shop:
            asked = await shop.post(
                "/v1/payment-requests",
                json={
                    "miniappId": f"{merchant_id}-app",
                    "userId": user,
                    "amount": 2_000,
                    "currency": CURRENCY,
                },
                headers={"Idempotency-Key": "lunch"},
            )
            assert asked.status_code == 201, asked.text
            front_door = {"X-PM-User": user, "X-PM-Proxy-Secret": PROXY_SECRET}
            async with httpx.AsyncClient(base_url=saga.url, timeout=40.0) as http:
                confirmed = await http.post(
                    f"/v1/me/payment-requests/{asked.json()['id']}/confirm", headers=front_door
                )
            assert confirmed.status_code == 202, confirmed.text
            charge_id = confirmed.json()["id"]
            # A credit the merchant's account cannot fund (nothing in it but the 1,970 of the charge).
            credit = await shop.post(
                "/v1/intents",
                json={
                    "type": "MINIAPP_CREDIT",
                    "amount": 40_000,
                    "currency": CURRENCY,
                    "from": {"kind": "merchant", "id": merchant_id},
                    "to": {"kind": "user", "id": user},
                    "miniappId": f"{merchant_id}-app",
                },
                headers={"Idempotency-Key": uuid.uuid4().hex},
            )
            assert credit.status_code == 202, credit.text

        async def three_events() -> bool:
            return len(receiver.ids()) >= 3

        await eventually(three_events, timeout=30, what="three events delivered")
        async with saga.http(saga.admin) as admin:
            shown = {
                i: (await admin.get(f"/v1/intents/{i}")).json() for i in (charge_id, credit.json()["id"])
            }
    hook = standardwebhooks.Webhook(endpoint.secret)
    bodies: dict[str, Any] = {}
    for request in receiver.received:
        body = hook.verify(request.body, request.headers)
        assert isinstance(body, dict)
        bodies[body["type"]] = body["data"]
    assert sorted(bodies) == ["intent.failed", "intent.settled", "payment_request.confirmed"]
    assert bodies["payment_request.confirmed"]["paymentRequestId"] == asked.json()["id"]
    assert (
        bodies["intent.settled"]["id"] == charge_id and bodies["intent.failed"]["id"] == credit.json()["id"]
    )
    for data in (bodies["intent.settled"], bodies["intent.failed"]):
        api = shown[data["id"]]
        assert {k: data[k] for k in SHOWN} == {k: api.get(k) for k in SHOWN}
