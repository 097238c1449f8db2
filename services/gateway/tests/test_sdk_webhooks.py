"""The SDK's webhook calls against the real gateway: an admin creates a merchant's endpoint (and again,
idempotently), lists and reads it, rotates its secret, disables and enables it, pages through its
deliveries, reads one with its attempts and replays it; the blocking client does the same."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from pm_client import PMClient, PMError, SyncPMClient
from pm_shared.db import Pool
from pm_tools.testing.gateway import Gateway
from pm_tools.testing.webhook_rows import delivery, leave_nothing_due, merchant


@pytest.fixture(autouse=True)
async def _nothing_left_due(database_url: str) -> AsyncIterator[None]:
    yield
    await leave_nothing_due(database_url)


URL = "https://hooks.example.com/pm"


@pytest.fixture
async def admin(gateway: Gateway) -> AsyncIterator[PMClient]:
    async with PMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as pm:
        yield pm


def _code(error: pytest.ExceptionInfo[PMError]) -> tuple[int, str | None]:
    return error.value.status, None if error.value.problem is None else error.value.problem.code


async def test_an_admin_manages_an_endpoint_and_its_deliveries_with_the_sdk(
    admin: PMClient, gateway: Gateway, db_pool: Pool
) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)
    created = await admin.create_webhook_endpoint(
        merchant_id, URL, ["intent.settled", "refund.settled"], idempotency_key="sdk-1"
    )
    assert created.secret is not None and created.secret.startswith("whsec_")
    again = await admin.create_webhook_endpoint(
        merchant_id, URL, ["refund.settled", "intent.settled"], idempotency_key="sdk-1"
    )
    assert (again.endpoint_id, again.secret) == (created.endpoint_id, created.secret)
    with pytest.raises(PMError) as reused:
        await admin.create_webhook_endpoint(
            merchant_id, URL + "/2", ["intent.settled"], idempotency_key="sdk-1"
        )
    assert _code(reused) == (409, "idempotency_key_reused")
    with pytest.raises(PMError) as private:
        await admin.create_webhook_endpoint(
            merchant_id, "https://10.0.0.8/", ["intent.failed"], idempotency_key="2"
        )
    assert _code(private) == (422, "webhook_url_not_allowed")

    endpoint_id = created.endpoint_id
    assert [e.endpoint_id for e in await admin.list_webhook_endpoints(merchant_id)] == [endpoint_id]
    rotated = await admin.rotate_webhook_secret(endpoint_id, grace_seconds=60)
    assert rotated.secret not in (None, created.secret) and rotated.previous_secret_until is not None
    disabled = await admin.disable_webhook_endpoint(endpoint_id, reason="moving")
    assert (disabled.status, disabled.disabled_reason) == ("DISABLED", "moving")

    made = [await delivery(db_pool, endpoint_id, merchant_id, attempts=n) for n in (1, 2, 3)]
    with pytest.raises(PMError) as refused:
        await admin.replay_webhook_delivery(made[0])
    assert _code(refused) == (409, "webhook_endpoint_disabled")
    assert (await admin.enable_webhook_endpoint(endpoint_id)).status == "ENABLED"
    shown = await admin.get_webhook_endpoint(endpoint_id)
    assert [h.action for h in shown.history] == ["created", "rotated", "disabled", "enabled"]

    first = await admin.list_webhook_deliveries(endpoint_id=endpoint_id, limit=2)
    assert [d.id for d in first.items] == [made[2], made[1]] and first.next_cursor is not None
    rest = await admin.list_webhook_deliveries(
        endpoint_id=endpoint_id, before=int(first.next_cursor), limit=2
    )
    assert [d.id for d in rest.items] == [made[0]] and rest.next_cursor is None
    failed = await admin.list_webhook_deliveries(merchant_id=merchant_id, status="FAILED")
    assert [d.id for d in failed.items] == list(reversed(made))

    detail = await admin.get_webhook_delivery(made[1])
    assert [a.trigger for a in detail.attempt_log] == ["initial", "retry"] and detail.payload.startswith("{")
    replayed = await admin.replay_webhook_delivery(made[1])
    assert (replayed.status, replayed.attempts, replayed.replay_by) == ("PENDING", 2, gateway.admin.key_id)
    with pytest.raises(PMError) as missing:
        await admin.get_webhook_delivery(made[2] + 10_000_000)
    assert _code(missing) == (404, "webhook_delivery_not_found")


async def test_the_blocking_client_has_the_same_calls(gateway: Gateway, db_pool: Pool) -> None:
    merchant_id = await merchant(db_pool, gateway.cipher)

    def work() -> tuple[str, list[str], str]:
        with SyncPMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as pm:
            created = pm.create_webhook_endpoint(merchant_id, URL, ["intent.failed"], idempotency_key="s-1")
            pm.rotate_webhook_secret(created.endpoint_id, grace_seconds=0)
            pm.disable_webhook_endpoint(created.endpoint_id)
            pm.enable_webhook_endpoint(created.endpoint_id)
            listed = pm.list_webhook_endpoints(merchant_id)
            history = [h.action for h in pm.get_webhook_endpoint(created.endpoint_id).history]
            page = pm.list_webhook_deliveries(merchant_id=merchant_id)
            assert page.items == []
            return listed[0].endpoint_id, history, created.endpoint_id

    listed, history, endpoint_id = await asyncio.to_thread(work)
    assert listed == endpoint_id and history == ["created", "rotated", "disabled", "enabled"]
    delivery_id = await delivery(db_pool, endpoint_id, merchant_id, attempts=1)

    def replay() -> str:
        with SyncPMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as pm:
            assert pm.get_webhook_delivery(delivery_id).attempt_log[0].status_code == 500
            return pm.replay_webhook_delivery(delivery_id).status

    assert await asyncio.to_thread(replay) == "PENDING"
