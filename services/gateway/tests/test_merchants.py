"""Merchant administration through the gateway: onboarding's idempotency and conflicts, the merchant's
own key (it signs, is refused once deactivated, signs again once reactivated), secret rotation with
an overlap, and the audit trail. No ledger-writer runs here, so accounts stay unopened (202); the
fleet test (tests/test_merchants_onboarding.py) opens them."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from pm_shared import db
from pm_tools.testing.gateway import Gateway, Key


def merchant_body(merchant_id: str, **changes: Any) -> dict[str, Any]:
    return {"merchantId": merchant_id, "name": "Coffee Corner", "currencies": ["THB"], **changes}


def problem_code(response: httpx.Response) -> str:
    code: str = response.json()["code"]
    return code


async def onboard(gateway: Gateway, body: dict[str, Any], key: str) -> httpx.Response:
    return await gateway.send(
        "POST", "/v1/admin/merchants", body, key=gateway.admin, headers={"Idempotency-Key": key}
    )


async def merchant_keys(database_url: str, merchant_id: str) -> int:
    conn = await db.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pm.service_key WHERE permissions ->> 'merchant' = $1", merchant_id
        )
        return count
    finally:
        await conn.close()


async def test_onboarding_is_idempotent_and_one_key_per_merchant(gateway: Gateway, database_url: str) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    first = await onboard(gateway, merchant_body(merchant_id), "onboard-1")
    assert first.status_code == 202, first.text  # no ledger-writer here: the account is on its way
    made = first.json()
    assert made["merchantId"] == merchant_id and made["status"] == "ACTIVE" and made["secret"]
    assert [a["currency"] for a in made["accounts"]] == ["THB"] and not made["accounts"][0]["opened"]
    again = await onboard(gateway, merchant_body(merchant_id), "onboard-1")
    assert again.status_code == 202 and again.headers["idempotent-replayed"] == "true"
    assert (again.json()["keyId"], again.json()["secret"]) == (made["keyId"], made["secret"])
    assert await merchant_keys(database_url, merchant_id) == 1

    other_body = await onboard(gateway, merchant_body(merchant_id, name="Other"), "onboard-1")
    assert (other_body.status_code, problem_code(other_body)) == (409, "idempotency_key_reused")
    other_key = await onboard(gateway, merchant_body(merchant_id), "onboard-2")
    assert (other_key.status_code, problem_code(other_key)) == (409, "merchant_exists")
    twice = await onboard(gateway, merchant_body("m-x", currencies=["THB", "THB"]), "onboard-3")
    assert (twice.status_code, problem_code(twice)) == (422, "validation_failed")
    user = await gateway.send(
        "POST", "/v1/admin/merchants", merchant_body("m-y"), headers={"Idempotency-Key": "onboard-4"}
    )
    assert (user.status_code, problem_code(user)) == (403, "forbidden_admin")
    assert await merchant_keys(database_url, merchant_id) == 1
    assert await merchant_keys(database_url, "m-y") == 0


async def test_a_deactivated_merchant_key_is_refused_and_signs_again_once_reactivated(
    gateway: Gateway,
) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    made = (await onboard(gateway, merchant_body(merchant_id), str(uuid.uuid4()))).json()
    key = Key(made["keyId"], made["secret"])
    assert (await gateway.send("GET", "/v1/intents", key=key)).status_code == 200
    admin_only = await gateway.send("GET", "/v1/admin/merchants", key=key)
    assert (admin_only.status_code, problem_code(admin_only)) == (403, "forbidden_admin")

    path = f"/v1/admin/merchants/{merchant_id}"
    off = await gateway.send("POST", path + "/deactivate", key=gateway.admin)
    assert off.status_code == 200 and off.json()["status"] == "INACTIVE" and off.json()["deactivatedAt"]
    refused = await gateway.send("GET", "/v1/intents", key=key)
    assert (refused.status_code, problem_code(refused)) == (401, "auth_inactive_key")
    again = await gateway.send("POST", path + "/deactivate", key=gateway.admin)
    assert again.json()["deactivatedAt"] == off.json()["deactivatedAt"]  # a repeat changes nothing

    on = await gateway.send("POST", path + "/reactivate", key=gateway.admin)
    assert on.status_code == 200 and on.json()["status"] == "ACTIVE" and on.json()["deactivatedAt"] is None
    assert (await gateway.send("GET", "/v1/intents", key=key)).status_code == 200
    shown = (await gateway.send("GET", path, key=gateway.admin)).json()
    assert [e["action"] for e in shown["events"]] == ["created", "deactivated", "reactivated"]
    assert {e["actor"] for e in shown["events"]} == {gateway.admin.key_id}
    listed = (await gateway.send("GET", "/v1/admin/merchants", key=gateway.admin)).json()
    assert merchant_id in {m["merchantId"] for m in listed}
    missing = await gateway.send("POST", "/v1/admin/merchants/nobody/deactivate", key=gateway.admin)
    assert (missing.status_code, problem_code(missing)) == (404, "merchant_not_found")


async def test_a_rotated_merchant_secret_overlaps_with_the_previous_one(gateway: Gateway) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    made = (await onboard(gateway, merchant_body(merchant_id), str(uuid.uuid4()))).json()
    old = Key(made["keyId"], made["secret"])
    rotated = await gateway.send(
        "POST", f"/v1/admin/merchants/{merchant_id}/rotate-secret", {"graceSeconds": 600}, key=gateway.admin
    )
    assert rotated.status_code == 200, rotated.text
    new = Key(made["keyId"], rotated.json()["secret"])
    assert new.secret != old.secret
    assert (await gateway.send("GET", "/v1/intents", key=old)).status_code == 200
    assert (await gateway.send("GET", "/v1/intents", key=new)).status_code == 200
    now = await gateway.send(
        "POST", f"/v1/admin/merchants/{merchant_id}/rotate-secret", {"graceSeconds": 0}, key=gateway.admin
    )
    newest = Key(made["keyId"], now.json()["secret"])
    refused = await gateway.send("GET", "/v1/intents", key=new)
    assert (refused.status_code, problem_code(refused)) == (401, "auth_bad_signature")  # no grace: gone
    assert (await gateway.send("GET", "/v1/intents", key=newest)).status_code == 200
    shown = (await gateway.send("GET", f"/v1/admin/merchants/{merchant_id}", key=gateway.admin)).json()
    assert [e["action"] for e in shown["events"]] == ["created", "secret_rotated", "secret_rotated"]


async def test_accounts_close_only_once_the_merchant_is_deactivated_and_idle(gateway: Gateway) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    made = (await onboard(gateway, merchant_body(merchant_id), merchant_id)).json()
    shop = Key(made["keyId"], made["secret"])
    app = {"miniappId": f"{merchant_id}-app", "merchantId": merchant_id, "name": "Rewards",
           "operations": ["MINIAPP_CREDIT"], "maxCharge": {}}  # fmt: skip
    assert (await gateway.send("POST", "/v1/admin/miniapps", app, key=gateway.admin)).status_code == 201
    base = f"/v1/admin/merchants/{merchant_id}"
    active = await gateway.send("POST", f"{base}/close-accounts", key=gateway.admin)
    assert (active.status_code, problem_code(active)) == (409, "merchant_active")
    # No orchestrator runs here: the credit stays in flight for as long as the test needs.
    credit = {
        "type": "MINIAPP_CREDIT",
        "amount": 100,
        "currency": "THB",
        "miniappId": f"{merchant_id}-app",
        "from": {"kind": "merchant", "id": merchant_id},
        "to": {"kind": "user", "id": "u-1"},
    }
    sent = await gateway.send("POST", "/v1/intents", credit, key=shop, headers={"Idempotency-Key": "c-1"})
    assert sent.status_code == 202, sent.text
    assert (await gateway.send("POST", f"{base}/deactivate", key=gateway.admin)).status_code == 200
    busy = await gateway.send("POST", f"{base}/close-accounts", key=gateway.admin)
    assert (busy.status_code, problem_code(busy)) == (409, "merchant_busy")
    assert "1 intents" in busy.json()["detail"]
    shown = await gateway.send("GET", base, key=gateway.admin)
    assert (shown.json()["status"], shown.json()["accountsState"]) == ("INACTIVE", "OPEN")
    assert "accounts_closed" not in [e["action"] for e in shown.json()["events"]]
    missing = await gateway.send("POST", "/v1/admin/merchants/nobody-here/close-accounts", key=gateway.admin)
    assert (missing.status_code, problem_code(missing)) == (404, "merchant_not_found")
    forbidden = await gateway.send("POST", f"{base}/close-accounts", key=shop)
    assert forbidden.status_code == 401  # its own key is deactivated: it signs nothing now
