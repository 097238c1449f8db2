"""The sandboxes' own PSP callbacks: each sandbox runs as a process and delivers its callbacks to the
gateway (served as `pm-gateway` serves it, see conftest.py), which verifies, deduplicates and passes
them on as `PspHint`s. Both sides on their default secrets: what `pm up` relies on."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_gateway.settings import Settings
from pm_shared.fleet import IPPS_SANDBOX, QP_SANDBOX, Member
from pm_shared.messages import PspHint, psp_key
from pm_tools import processes
from pm_tools.processes import free_port
from pm_tools.testing.fixtures import eventually

IPPS_KEY = "{pm:psp:ipps:hints:0}"
QP_KEY = "{pm:psp:qp:hints:0}"

WebhookSettings = Callable[..., Settings]
ServeGateway = Callable[[Settings], AbstractAsyncContextManager[str]]
ReadHints = Callable[[Redis, str], Awaitable[list[PspHint]]]


@contextlib.contextmanager
def sandbox(member: Member, env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        environ = processes.environment(member, env, port=port)
        popen = processes.spawn(member, environ, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield popen
    finally:
        popen.kill()
        popen.wait(10)


async def wait_healthy(url: str) -> None:
    async def up() -> bool:
        try:
            async with httpx.AsyncClient() as http:
                return (await http.get(url + "/healthz")).status_code == 200
        except httpx.HTTPError:
            return False

    await eventually(up, timeout=15, what=f"{url} answers /healthz")


@pytest.mark.slow
async def test_the_ipps_sandbox_callbacks_are_verified_deduplicated_and_passed_on(
    clean: Redis,
    webhook_settings: WebhookSettings,
    serve_gateway: ServeGateway,
    read_hints: ReadHints,
    tmp_path: Path,
) -> None:
    # Both sides on their defaults: the default secrets match, which is what `pm up` relies on.
    settings = webhook_settings()
    settings = msgspec.structs.replace(settings, ipps_callback_secret=Settings().ipps_callback_secret)
    port = free_port()
    base = processes.base_url(port)
    key = psp_key(str(uuid.uuid4()), "payout")
    async with serve_gateway(settings) as url:
        env = {"PM_IPPS_SANDBOX_CALLBACK_URL": url + "/v1/webhooks/ipps"}
        with sandbox(IPPS_SANDBOX, env, port, tmp_path / "ipps.log"):
            await wait_healthy(base)
            async with httpx.AsyncClient(base_url=base, timeout=10) as http:
                inquiry = await http.post(
                    "/v1/inquiry",
                    json={"amount": 10_000, "proxy_type": "MSISDN", "proxy_value": "0812345678"},
                )
                assert inquiry.status_code == 200, inquiry.text
                confirmed = await http.post(
                    "/v1/transfers",
                    json={
                        "inquiry_id": inquiry.json()["inquiry_id"],
                        "amount": 10_000,
                        "idempotency_key": key,
                    },
                    headers={"X-Sandbox-Fault": "duplicate-callbacks,out-of-order-callbacks"},
                )
                assert confirmed.status_code == 201, confirmed.text
                transfer_id = confirmed.json()["transfer_id"]

                async def delivered() -> bool:
                    return len((await http.get("/_sim/callbacks")).json()) >= 4

                await eventually(delivered, what="four callback deliveries")
                deliveries = (await http.get("/_sim/callbacks")).json()

    # Final, final again, stale pending, stale pending again: every one acknowledged on its first attempt.
    assert [(d["event"], d["attempt"], d["status_code"]) for d in deliveries] == [
        ("transfer.succeeded", 1, 200),
        ("transfer.succeeded", 1, 200),
        ("transfer.pending", 1, 200),
        ("transfer.pending", 1, 200),
    ]
    passed_on = await read_hints(clean, IPPS_KEY)
    assert [(h.event_id, h.claimed_status) for h in passed_on] == [
        (f"{transfer_id}:transfer.succeeded:2", "SUCCESS"),
        (f"{transfer_id}:transfer.pending:1", "PENDING"),
    ]
    assert all(h.idempotency_key == key and h.psp_reference == transfer_id for h in passed_on)


@pytest.mark.slow
async def test_the_qp_sandbox_callbacks_are_verified_deduplicated_and_passed_on(
    clean: Redis,
    webhook_settings: WebhookSettings,
    serve_gateway: ServeGateway,
    read_hints: ReadHints,
    tmp_path: Path,
) -> None:
    settings = webhook_settings()
    settings = msgspec.structs.replace(settings, qp_callback_secret=Settings().qp_callback_secret)
    port = free_port()
    base = processes.base_url(port)
    order = psp_key(str(uuid.uuid4()), "collect")
    auth = {"Authorization": f"Bearer {Settings().qp_callback_secret}"}
    async with serve_gateway(settings) as url:
        env = {"PM_QP_SANDBOX_CALLBACK_URL": url + "/v1/webhooks/qp"}
        with sandbox(QP_SANDBOX, env, port, tmp_path / "qp.log"):
            await wait_healthy(base)
            async with httpx.AsyncClient(base_url=base, timeout=10, headers=auth) as http:
                registered = await http.post(
                    "/v1/qrs",
                    json={"order": order, "amount": 10_000},
                    headers={"X-Sandbox-Fault": "duplicate-callbacks"},
                )
                assert registered.status_code == 201, registered.text
                qr_id = registered.json()["qr_id"]
                paid = await http.post(f"/v1/sandbox/qrs/{qr_id}/pay")
                assert paid.status_code == 200, paid.text

                async def final_delivered() -> bool:
                    found: list[dict[str, Any]] = (
                        await http.get("/v1/sandbox/callbacks", params={"qr_id": qr_id})
                    ).json()
                    return sum(1 for d in found if d["status"] == "ACCEPTED") >= 2

                await eventually(final_delivered, what="the ACCEPTED callback delivered twice")
                deliveries = (await http.get("/v1/sandbox/callbacks", params={"qr_id": qr_id})).json()

    assert deliveries and all((d["attempt"], d["http_status"]) == (1, 200) for d in deliveries), deliveries
    event_ids = list(dict.fromkeys(d["event_id"] for d in deliveries))
    assert len(deliveries) == 2 * len(event_ids)  # every event twice
    passed_on = await read_hints(clean, QP_KEY)
    assert [h.event_id for h in passed_on] == event_ids
    assert passed_on[-1].claimed_status == "ACCEPTED"
    assert all(h.idempotency_key == order and h.psp_reference == qr_id for h in passed_on)
