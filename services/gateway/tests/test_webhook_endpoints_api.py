"""The admin API of merchants' webhook endpoints against the real gateway and PostgreSQL: creation with
a secret that a real Standard Webhooks verifier (`standardwebhooks`) accepts signatures of, made
from what is stored; idempotent replays; every refusal of a creation, each changing nothing; the URL
policy and its settings; rotation with both secrets in force until the grace period ends; disable
and enable, each change logged with its actor."""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
import standardwebhooks

from pm_client.webhook_api import EVENT_TYPES as API_EVENT_TYPES
from pm_shared.db import Pool
from pm_shared.keys.store import Permissions
from pm_shared.webhooks import endpoints, signing
from pm_shared.webhooks.events import EVENT_TYPES
from pm_tools.testing.gateway import ALL_TYPES, Gateway
from pm_tools.testing.webhook_rows import merchant

URL = "https://hooks.example.com/pm?shop=1"
LOCAL = {"PM_GATEWAY_WEBHOOK_ALLOW_HTTP": "true", "PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8, ::1"}


@pytest.fixture
def gateway_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The gateway's settings: strict (https, public addresses only) unless a test asks otherwise."""
    wanted: dict[str, str] = getattr(request, "param", {})
    return wanted


def _path(merchant_id: str) -> str:
    return f"/v1/admin/merchants/{merchant_id}/webhook-endpoints"


async def _create(
    gateway: Gateway,
    merchant_id: str,
    body: object,
    key: str | None = None,
    **kwargs: Any,
) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return await gateway.send("POST", _path(merchant_id), body, key=gateway.admin, headers=headers, **kwargs)


def _problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["code"] == code, problem
    return problem


async def _counts(pool: Pool) -> tuple[int, int]:
    """Endpoints and log rows: what a refusal must leave as it was."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM pm.webhook_endpoint) AS e,"
            " (SELECT count(*) FROM pm.webhook_event_log) AS l"
        )
    assert row is not None
    return row["e"], row["l"]


def test_the_api_offers_the_event_types_the_sender_knows() -> None:
    assert API_EVENT_TYPES == EVENT_TYPES


async def test_a_created_endpoint_s_secret_verifies_what_the_stored_secret_signs(
    gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    response = await _create(
        gateway, merchant_id, {"url": URL, "eventTypes": ["refund.settled", "intent.settled"]}
    )
    assert response.status_code == 201, response.text
    created = response.json()
    endpoint_id = created["endpointId"]
    assert response.headers["location"] == f"/v1/admin/webhook-endpoints/{endpoint_id}"
    assert "idempotent-replayed" not in response.headers
    assert (created["merchantId"], created["url"], created["status"]) == (merchant_id, URL, "ENABLED")
    assert created["eventTypes"] == ["intent.settled", "refund.settled"]  # the events' own order
    assert created["secret"].startswith("whsec_") and created["createdBy"] == gateway.admin.key_id

    # What the sender will sign with, read back from the row (decrypted), is the secret shown.
    async with db_pool.acquire() as conn:
        stored = await endpoints.signing_secrets(conn, gateway.cipher, endpoint_id)
        blob = await conn.fetchval(
            "SELECT secret_encrypted FROM pm.webhook_endpoint WHERE endpoint_id = $1", endpoint_id
        )
    assert signing.show(stored[0]).encode() not in blob  # never stored in the clear
    body = b'{"type":"refund.settled","timestamp":"2026-12-07T10:00:00Z","data":{}}'
    headers = signing.headers(stored, "msg_test1", int(time.time()), body)
    assert standardwebhooks.Webhook(created["secret"]).verify(body, headers)["type"] == "refund.settled"
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(signing.show(signing.new_secret())).verify(body, headers)

    listed = await gateway.send("GET", _path(merchant_id), key=gateway.admin)
    assert listed.status_code == 200, listed.text
    assert [e["endpointId"] for e in listed.json()] == [endpoint_id]
    assert all("secret" not in e for e in listed.json())
    shown = await gateway.send("GET", f"/v1/admin/webhook-endpoints/{endpoint_id}", key=gateway.admin)
    assert shown.status_code == 200 and "secret" not in shown.json()
    assert [(h["action"], h["actor"]) for h in shown.json()["history"]] == [("created", gateway.admin.key_id)]


async def test_a_creation_is_idempotent_and_shows_its_secret_until_rotated(
    gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    body = {"url": URL, "eventTypes": ["intent.settled", "intent.failed"]}
    first = await _create(gateway, merchant_id, body, "create-1")
    assert first.status_code == 201, first.text
    counts = await _counts(db_pool)
    # The same request again, event types in another order: the same endpoint and secret, nothing new.
    again = await _create(
        gateway, merchant_id, {**body, "eventTypes": ["intent.failed", "intent.settled"]}, "create-1"
    )
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _counts(db_pool) == counts
    # The key with another body, or for another merchant: 409, nothing made.
    other = await merchant(db_pool, gateway.cipher)
    for merchant_for, other_body in (
        (merchant_id, {**body, "url": URL + "&v=2"}),
        (merchant_id, {**body, "eventTypes": ["intent.settled"]}),
        (other, body),
    ):
        _problem(await _create(gateway, merchant_for, other_body, "create-1"), 409, "idempotency_key_reused")
    assert await _counts(db_pool) == counts
    # Another admin key has its own keys: the same Idempotency-Key makes its own endpoint.
    second_admin = await gateway.key(Permissions(operations=ALL_TYPES, owners=None, admin=True))
    headers = {"Idempotency-Key": "create-1"}
    theirs = await gateway.send("POST", _path(merchant_id), body, key=second_admin, headers=headers)
    assert theirs.status_code == 201 and theirs.json()["endpointId"] != first.json()["endpointId"]

    endpoint_id = first.json()["endpointId"]
    rotated = await gateway.send(
        "POST", f"/v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret", key=gateway.admin
    )
    assert rotated.status_code == 200, rotated.text
    after = await _create(gateway, merchant_id, body, "create-1")
    assert after.status_code == 201 and after.json()["endpointId"] == endpoint_id
    assert after.json()["secret"] is None  # the creation's secret no longer signs alone; never the new one


async def test_every_refusal_of_a_creation_has_its_code_and_changes_nothing(
    gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    counts = await _counts(db_pool)
    good = {"url": URL, "eventTypes": ["intent.settled"]}
    refusals: list[tuple[str, object, int, str]] = [
        (merchant_id, {**good, "url": "http://hooks.example.com/"}, 422, "webhook_url_https_required"),
        (merchant_id, {**good, "url": "https://127.0.0.1/hook"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://[::1]:8443/hook"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://2130706433/"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://localhost/"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://10.1.2.3/"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://169.254.169.254/latest"}, 422, "webhook_url_not_allowed"),
        (merchant_id, {**good, "url": "https://user:pw@hooks.example.com/"}, 422, "webhook_url_invalid"),
        (merchant_id, {**good, "url": "ftp://hooks.example.com/"}, 422, "webhook_url_invalid"),
        (merchant_id, {**good, "url": "https://hooks.example.com/#x"}, 422, "webhook_url_invalid"),
        (merchant_id, {**good, "url": "https://hooks.example.com:99999/"}, 422, "webhook_url_invalid"),
        (merchant_id, {**good, "url": "https:hooks.example.com"}, 422, "webhook_url_invalid"),
        (merchant_id, {**good, "url": "https://" + "a" * 2041}, 422, "validation_failed"),  # 2049 characters
        (merchant_id, {**good, "url": "https://hooks.example.com/ x"}, 422, "validation_failed"),
        (merchant_id, {**good, "url": 42}, 422, "validation_failed"),
        (merchant_id, {**good, "eventTypes": []}, 422, "validation_failed"),
        (merchant_id, {**good, "eventTypes": ["intent.created"]}, 422, "validation_failed"),
        (merchant_id, {**good, "eventTypes": ["intent.settled", "intent.settled"]}, 422, "validation_failed"),
        (merchant_id, {**good, "eventTypes": "intent.settled"}, 422, "validation_failed"),
        (merchant_id, {**good, "secret": "whsec_mine"}, 422, "validation_failed"),
        (merchant_id, {"url": URL}, 422, "validation_failed"),
        (merchant_id, b"{", 400, "malformed_json"),
        (f"nobody-{uuid.uuid4().hex[:8]}", good, 404, "merchant_not_found"),
        ("bad id!", good, 400, "invalid_parameter"),
    ]
    for merchant_for, body, status, code in refusals:
        _problem(await _create(gateway, merchant_for, body), status, code)
    missing = await gateway.send("POST", _path(merchant_id), good, key=gateway.admin)
    _problem(missing, 400, "idempotency_key_missing")
    user = await gateway.send(
        "POST", _path(merchant_id), good, key=gateway.user, headers={"Idempotency-Key": "k"}
    )
    _problem(user, 403, "forbidden_admin")
    _problem(await gateway.send("GET", _path(merchant_id), key=gateway.user), 403, "forbidden_admin")
    _problem(await gateway.send("GET", _path("nobody-at-all"), key=gateway.admin), 404, "merchant_not_found")
    assert await _counts(db_pool) == counts


@pytest.mark.parametrize("gateway_env", [LOCAL], indirect=True)
async def test_the_allowed_networks_and_http_are_settings(gateway: Gateway, db_pool: Pool) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    for url in ("http://127.0.0.1:9999/hook", "http://[::1]:9999/hook", "http://localhost:9999/"):
        response = await _create(gateway, merchant_id, {"url": url, "eventTypes": ["intent.failed"]})
        assert response.status_code == 201, response.text
    outside = await _create(
        gateway, merchant_id, {"url": "http://192.168.1.10/", "eventTypes": ["intent.failed"]}
    )
    _problem(outside, 422, "webhook_url_not_allowed")


async def _endpoint(gateway: Gateway, db_pool: Pool) -> dict[str, Any]:
    merchant_id = await merchant(db_pool, gateway.cipher)
    response = await _create(gateway, merchant_id, {"url": URL, "eventTypes": list(EVENT_TYPES)})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_a_rotation_signs_with_both_secrets_until_its_grace_period_ends(
    gateway: Gateway, db_pool: Pool
) -> None:
    created = await _endpoint(gateway, db_pool)
    endpoint_id, old = created["endpointId"], created["secret"]
    path = f"/v1/admin/webhook-endpoints/{endpoint_id}"
    response = await gateway.send("POST", path + "/rotate-secret", {"graceSeconds": 3600}, key=gateway.admin)
    assert response.status_code == 200, response.text
    new = response.json()["secret"]
    assert new.startswith("whsec_") and new != old and response.json()["previousSecretUntil"] is not None

    body = b'{"type":"intent.settled","timestamp":"2026-12-07T10:00:00Z","data":{}}'

    async def verifiers() -> list[str]:
        """Which of the two secrets verify a message signed with the secrets in force now."""
        async with db_pool.acquire() as conn:
            in_force = await endpoints.signing_secrets(conn, gateway.cipher, endpoint_id)
        headers = signing.headers(in_force, "msg_rot", int(time.time()), body)
        accepted = []
        for name, secret in (("new", new), ("old", old)):
            try:
                standardwebhooks.Webhook(secret).verify(body, headers)
                accepted.append(name)
            except standardwebhooks.WebhookVerificationError:
                pass
        return accepted

    assert await verifiers() == ["new", "old"]
    # The grace period over (moved into the past rather than waited for): the new secret alone.
    async with db_pool.acquire() as conn:
        await conn.execute(
            "UPDATE pm.webhook_endpoint SET previous_until = now() - interval '1 second'"
            " WHERE endpoint_id = $1",
            endpoint_id,
        )
    assert await verifiers() == ["new"]
    assert (await gateway.send("GET", path, key=gateway.admin)).json()["previousSecretUntil"] is None

    # No grace: the replaced one stops at once; the one before it was dropped long ago.
    response = await gateway.send("POST", path + "/rotate-secret", {"graceSeconds": 0}, key=gateway.admin)
    newest = response.json()["secret"]
    async with db_pool.acquire() as conn:
        assert [
            signing.show(s) for s in await endpoints.signing_secrets(conn, gateway.cipher, endpoint_id)
        ] == [newest]
    # An empty body is a day's grace.
    response = await gateway.send("POST", path + "/rotate-secret", key=gateway.admin)
    assert response.status_code == 200 and response.json()["previousSecretUntil"] is not None
    history = (await gateway.send("GET", path, key=gateway.admin)).json()["history"]
    assert [(h["action"], h["detail"]) for h in history] == [
        ("created", history[0]["detail"]),
        ("rotated", '{"graceSeconds": 3600}'),
        ("rotated", '{"graceSeconds": 0}'),
        ("rotated", '{"graceSeconds": 86400}'),
    ]
    for body_sent, code in (
        ({"graceSeconds": -1}, 422),
        ({"graceSeconds": 31 * 86_400}, 422),
        ({"x": 1}, 422),
    ):
        response = await gateway.send("POST", path + "/rotate-secret", body_sent, key=gateway.admin)
        _problem(response, code, "validation_failed")
    assert len((await gateway.send("GET", path, key=gateway.admin)).json()["history"]) == 4


async def test_an_endpoint_is_disabled_and_enabled_each_change_logged(
    gateway: Gateway, db_pool: Pool
) -> None:
    endpoint_id = (await _endpoint(gateway, db_pool))["endpointId"]
    path = f"/v1/admin/webhook-endpoints/{endpoint_id}"
    reason = {"reason": "receiver is being moved"}
    disabled = await gateway.send("POST", path + "/disable", reason, key=gateway.admin)
    assert disabled.status_code == 200, disabled.text
    assert (disabled.json()["status"], disabled.json()["disabledReason"]) == ("DISABLED", reason["reason"])
    again = await gateway.send("POST", path + "/disable", key=gateway.admin)  # a repeat: nothing changes
    assert again.json()["disabledReason"] == reason["reason"]

    async with db_pool.acquire() as conn:  # as the sender leaves a failing endpoint
        await conn.execute(
            "UPDATE pm.webhook_endpoint SET failing_since = now() WHERE endpoint_id = $1", endpoint_id
        )
    enabled = await gateway.send("POST", path + "/enable", key=gateway.admin)
    assert enabled.status_code == 200, enabled.text
    shown = enabled.json()
    assert (shown["status"], shown["disabledReason"], shown["failingSince"]) == ("ENABLED", None, None)
    await gateway.send("POST", path + "/enable", key=gateway.admin)
    disabled = await gateway.send("POST", path + "/disable", key=gateway.admin)
    assert disabled.json()["disabledReason"] == f"disabled by {gateway.admin.key_id}"
    history = (await gateway.send("GET", path, key=gateway.admin)).json()["history"]
    assert [(h["action"], h["actor"]) for h in history] == [
        ("created", gateway.admin.key_id),
        ("disabled", gateway.admin.key_id),
        ("enabled", gateway.admin.key_id),
        ("disabled", gateway.admin.key_id),
    ]
    for action in ("/disable", "/enable", "/rotate-secret", ""):
        method = "GET" if not action else "POST"
        _problem(await gateway.send(method, path + action, key=gateway.user), 403, "forbidden_admin")
        for unknown in ("ep_" + "0" * 24, "ep_nothex", "x" * 300, "%00"):
            response = await gateway.send(
                method, f"/v1/admin/webhook-endpoints/{unknown}{action}", key=gateway.admin
            )
            _problem(response, 404, "webhook_endpoint_not_found")
    _problem(await gateway.send("POST", path + "/enable", b"{}", key=gateway.admin), 400, "body_unexpected")
    _problem(
        await gateway.send("POST", path + "/disable", {"reason": "a\nb"}, key=gateway.admin),
        422,
        "validation_failed",
    )
    assert len((await gateway.send("GET", path, key=gateway.admin)).json()["history"]) == 4
