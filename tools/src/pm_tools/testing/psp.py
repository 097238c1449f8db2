"""The PSP half of an end-to-end fleet for tests: both PSP sandboxes as real processes calling the saga
fleet's gateway back, and both adapters talking to them (tests/test_psp.py, tests/test_psp_sbp.py).
`psp_fleet` runs it all on a database of its own for a test module."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from pm_client import api as http_api
from pm_gateway.settings import Settings as GatewaySettings
from pm_shared.fleet import IPPS_SANDBOX, QP_SANDBOX
from pm_shared.ledger import ids
from pm_shared.messages import psp_key
from pm_tools.testing.db import run
from pm_tools.testing.fleet import Fleet, Proc
from pm_tools.testing.saga import RECOVERY_ENV, SagaFleet, module_saga, transfers

PSP_STREAMS = ("pm:psp:ipps:jobs", "pm:psp:qp:jobs", "pm:psp:ipps:hints", "pm:psp:qp:hints", "pm:psp:results")
IPPS_HINTS_KEY = "{pm:psp:ipps:hints:0}"
MOBILE = "0812345678"
# The gateway's and the sandboxes' default secrets agree (as `pm up` runs them).
IPPS_CALLBACK_SECRET = GatewaySettings().ipps_callback_secret
QP_SECRET = GatewaySettings().qp_callback_secret
HANG_S = 4
"""How long the IPPS sandbox's `timeout` fault holds a committed confirm's answer."""

ADAPTER_IPPS_ENV = {
    **RECOVERY_ENV,
    "PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS": "1500",
    "PM_ADAPTER_IPPS_POLL_INITIAL_MS": "100",
    "PM_ADAPTER_IPPS_POLL_MAX_MS": "400",
    "PM_ADAPTER_IPPS_POLL_ATTEMPTS": "4",
    "PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS": "500",
    "PM_ADAPTER_IPPS_NOT_EXECUTED_AFTER_S": "0.5",
}
ADAPTER_QP_ENV = {**RECOVERY_ENV, "PM_ADAPTER_QP_SWEEP_INTERVAL_MS": "300"}


@dataclass
class Psp:
    saga: SagaFleet
    ipps_url: str
    qp_url: str
    adapter_ipps: Proc
    adapter_qp: Proc

    @property
    def fleet(self) -> Fleet:
        return self.saga.fleet

    def start_adapter_ipps(self, **env: str) -> Proc:
        self.adapter_ipps = self.fleet.start(
            "adapter-ipps", env={**ADAPTER_IPPS_ENV, "PM_ADAPTER_IPPS_IPPS_URL": self.ipps_url, **env}
        )
        return self.adapter_ipps

    async def ipps_transfer(self, intent_id: str) -> dict[str, Any] | None:
        """What IPPS made under the intent's payout key (None: nothing)."""
        key = psp_key(intent_id, "psp_payout")
        async with httpx.AsyncClient(base_url=self.ipps_url, timeout=5.0) as http:
            response = await http.get("/v1/transfers", params={"idempotency_key": key})
        if response.status_code == 404:
            return None
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def ipps_paid(self) -> int:
        async with httpx.AsyncClient(base_url=self.ipps_url, timeout=5.0) as http:
            paid: int = (await http.get("/_sim/ledger")).json()["paid"]
        return paid

    async def qp(self, method: str, path: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {QP_SECRET}"}
        async with httpx.AsyncClient(base_url=self.qp_url, timeout=5.0, headers=headers) as http:
            return await http.request(method, path)


async def start_psps(saga: SagaFleet) -> Psp:
    """Both sandboxes, calling back the saga's gateway, and both adapters talking to them."""
    fleet = saga.fleet
    ipps = fleet.start(
        IPPS_SANDBOX.name,
        env={
            "PM_IPPS_SANDBOX_CALLBACK_URL": saga.url + "/v1/webhooks/ipps",
            "PM_IPPS_SANDBOX_CALLBACK_SECRET": IPPS_CALLBACK_SECRET,
            "PM_IPPS_SANDBOX_HANG_S": str(HANG_S),
            "PM_IPPS_SANDBOX_PENDING_MS": "300",
            "PM_IPPS_SANDBOX_INQUIRY_TTL_S": "2",  # a confirm that never took is concluded soon
        },
    )
    qp = fleet.start(
        QP_SANDBOX.name,
        env={"PM_QP_SANDBOX_CALLBACK_URL": saga.url + "/v1/webhooks/qp", "PM_QP_SANDBOX_SECRET": QP_SECRET},
    )
    await ipps.wait_ready()
    await qp.wait_ready()
    ipps_url, qp_url = ipps.url(""), qp.url("")
    adapter_qp = fleet.start(
        "adapter-qp",
        env={**ADAPTER_QP_ENV, "PM_ADAPTER_QP_QP_URL": qp_url, "PM_ADAPTER_QP_QP_SECRET": QP_SECRET},
    )
    psp = Psp(saga, ipps_url, qp_url, adapter_qp, adapter_qp)
    psp.start_adapter_ipps()
    for proc in (psp.adapter_ipps, adapter_qp):
        await proc.wait_ready()
    return psp


@contextmanager
def psp_fleet(workdir: Path) -> Iterator[Psp]:
    """The saga's fleet, the sandboxes and the adapters on a database of the module's own; every
    process is killed at the end (the sandboxes too)."""
    with module_saga(workdir, streams=PSP_STREAMS) as saga:
        yield run(start_psps(saga))


def user(test: str) -> str:
    return f"{test}-{uuid.uuid4().hex[:6]}"


def states(intent: http_api.Intent) -> list[str]:
    return [e.state for e in intent.timeline]


async def ledger_legs(psp: Psp, intent_id: str) -> dict[str, int]:
    """The principal's ledger transfers by kind (pending, post, void): their amounts."""
    wanted = {
        "pending": ids.transfer_id(intent_id, "principal"),
        "post": ids.transfer_id(intent_id, "principal:post"),
        "void": ids.transfer_id(intent_id, "principal:void"),
    }
    found = await transfers(psp.saga.database_url, list(wanted.values()))
    return {kind: found[tid].amount for kind, tid in wanted.items() if tid in found}
