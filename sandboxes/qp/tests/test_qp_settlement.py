"""The QP sandbox's daily settlement report and its faults, over real HTTP (uvicorn in this loop)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import msgspec
import pytest

from pm_sandbox_qp.app import create_app
from pm_sandbox_qp.settings import Settings
from pm_shared.psp import settlement
from pm_tools.testing.asgi import serve as serving

SECRET = "test-secret"
AUTH = {"Authorization": f"Bearer {SECRET}"}
DAY = date(2025, 3, 14)
HEADER = "psp_reference,merchant_reference,type,amount,currency,fee,status,settled_at"


class Clock:
    """The sandbox's clock, moved by the tests: starts at 10:00 UTC on DAY."""

    def __init__(self) -> None:
        self.now = datetime(DAY.year, DAY.month, DAY.day, 10, tzinfo=UTC).timestamp()

    def __call__(self) -> float:
        return self.now

    def set(self, at: datetime) -> None:
        self.now = at.timestamp()


@dataclass
class Sandbox:
    url: str
    http: httpx.AsyncClient
    clock: Clock

    async def register(self, amount: int = 150_00, **extra: object) -> dict[str, Any]:
        """A QR under a fresh order shaped like PM's idempotency keys (`<intent id>.<step>`)."""
        order = f"01J{uuid.uuid4().hex[:20]}.collect"
        body = {"order": order, "amount": amount, "currency": "RUB", "purpose": "top-up", **extra}
        answer = await self.http.post(f"{self.url}/v1/qrs", json=body)
        assert answer.status_code == 201, answer.text
        qr: dict[str, Any] = answer.json()
        return qr

    async def act(self, qr: dict[str, Any], action: str) -> None:
        answer = await self.http.post(f"{self.url}/v1/sandbox/qrs/{qr['qr_id']}/{action}")
        assert answer.status_code == 200, answer.text

    async def report_text(self, day: date | str = DAY) -> str:
        answer = await self.http.get(f"{self.url}/v1/settlements/{day}")
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"] == "text/csv; charset=utf-8"
        return answer.text

    async def report(self, day: date = DAY) -> list[dict[str, str]]:
        """The report's lines as the csv module reads them (not through PM's parser)."""
        text = await self.report_text(day)
        assert text.split("\n", 1)[0] == HEADER
        return list(csv.DictReader(io.StringIO(text)))

    async def faults(self, method: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.http.request(method, f"{self.url}/v1/sandbox/settlement", json=body)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    clock = Clock()
    settings = msgspec.convert({"secret": SECRET, "sweep_ms": 20}, Settings)
    async with serving(create_app(settings, clock=clock)) as url, httpx.AsyncClient(headers=AUTH) as http:
        yield Sandbox(url, http, clock)


async def test_a_paid_collection_is_listed_with_its_amount_fee_and_our_order(sandbox: Sandbox) -> None:
    qr = await sandbox.register(150_00)
    sandbox.clock.now += 30
    await sandbox.act(qr, "pay")
    assert await sandbox.report() == [
        {
            "psp_reference": qr["qr_id"],
            "merchant_reference": qr["order"],
            "type": "collection",
            "amount": "15000",
            "currency": "RUB",
            "fee": "60",  # 0.4 % of 150.00 RUB
            "status": "SUCCEEDED",
            "settled_at": "2025-03-14T10:00:30.000Z",
        }
    ]
    (line,) = settlement.parse(await sandbox.report_text(), DAY)
    assert (line.merchant_reference, line.amount, line.fee, line.status) == (
        qr["order"],
        150_00,
        60,
        "SUCCEEDED",
    )


async def test_rejected_and_expired_qrs_are_failed_and_open_ones_absent(sandbox: Sandbox) -> None:
    rejected = await sandbox.register(1_99)
    await sandbox.act(rejected, "reject")
    sandbox.clock.now += 1
    open_qr = await sandbox.register(5_00)
    expiring = await sandbox.register(7_00, ttl_s=60)
    sandbox.clock.now += 60  # the report itself ends a QR past its lifetime
    lines = await sandbox.report()
    assert [(line["merchant_reference"], line["status"], line["fee"]) for line in lines] == [
        (rejected["order"], "FAILED", "0"),
        (expiring["order"], "FAILED", "0"),
    ]
    assert lines[1]["settled_at"] == "2025-03-14T10:01:01.000Z"
    assert open_qr["order"] not in {line["merchant_reference"] for line in lines}


async def test_a_collection_finished_on_another_day_is_in_that_days_report_only(sandbox: Sandbox) -> None:
    sandbox.clock.set(datetime(2025, 3, 14, 23, 59, 59, tzinfo=UTC))
    late = await sandbox.register(1_00)
    await sandbox.act(late, "pay")
    crossing = await sandbox.register(2_00)
    sandbox.clock.set(datetime(2025, 3, 15, 0, 0, 1, tzinfo=UTC))
    await sandbox.act(crossing, "pay")  # registered on the 14th, paid on the 15th
    assert [line["merchant_reference"] for line in await sandbox.report(DAY)] == [late["order"]]
    assert [line["merchant_reference"] for line in await sandbox.report(DAY + timedelta(days=1))] == [
        crossing["order"]
    ]
    assert await sandbox.report_text(DAY - timedelta(days=1)) == HEADER + "\n"


async def test_omit_and_extra_alter_the_next_reports_until_cleared(sandbox: Sandbox) -> None:
    kept, omitted = await sandbox.register(1_000_00), await sandbox.register(2_000_00)
    await sandbox.act(kept, "pay")
    sandbox.clock.now += 1
    await sandbox.act(omitted, "pay")
    sandbox.clock.now += 1
    extra = {"merchant_reference": "ghost", "amount": 3_00, "status": "FAILED", "fee": 7}
    answer = await sandbox.faults("POST", {"omit": [omitted["order"]], "extra": [extra]})
    assert answer.status_code == 200 and answer.json()["omit"] == [omitted["order"]]
    lines = await sandbox.report()
    assert [line["merchant_reference"] for line in lines] == [kept["order"], "ghost"]
    ghost = lines[1]
    assert (ghost["type"], ghost["amount"], ghost["currency"], ghost["fee"], ghost["status"]) == (
        "collection",
        "300",
        "RUB",
        "7",
        "FAILED",
    )
    assert ghost["psp_reference"].startswith("AD") and len(ghost["psp_reference"]) == 32
    assert (await sandbox.faults("GET")).json() == answer.json()

    assert (await sandbox.faults("DELETE")).json() == {"omit": [], "extra": []}
    lines = await sandbox.report()
    assert [(line["merchant_reference"], line["fee"]) for line in lines] == [
        (kept["order"], "400"),
        (omitted["order"], "800"),
    ]
    # Only the reports were altered: the QR is as it was.
    found = await sandbox.http.get(f"{sandbox.url}/v1/qrs/{omitted['qr_id']}")
    assert found.json()["status"] == "ACCEPTED"


@pytest.mark.parametrize("day", ["2025-02-30", "2025-3-14", "20250314", "today", "2025-03-14Z"])
async def test_a_malformed_day_is_a_400_problem(sandbox: Sandbox, day: str) -> None:
    answer = await sandbox.http.get(f"{sandbox.url}/v1/settlements/{day}")
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_DAY")
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"omit": "not-a-list"},
        {"extra": [{"merchant_reference": "x"}]},
        {"extra": [{"merchant_reference": "x", "amount": 1, "type": "refund"}]},
        {"extra": [{"merchant_reference": "x", "amount": 1, "currency": "rub"}]},
        {"extra": [{"merchant_reference": "x", "amount": 1, "fee": -1}]},
    ],
)
async def test_a_bad_fault_is_a_422_problem_and_changes_nothing(
    sandbox: Sandbox, body: dict[str, Any]
) -> None:
    answer = await sandbox.faults("POST", body)
    assert (answer.status_code, answer.json()["code"]) == (422, "INVALID_REQUEST")
    assert (await sandbox.faults("GET")).json() == {"omit": [], "extra": []}


async def test_the_report_and_its_faults_need_the_bearer_token(sandbox: Sandbox) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer nope"}) as wrong:
        for answer in (
            await wrong.get(f"{sandbox.url}/v1/settlements/{DAY}"),
            await wrong.post(f"{sandbox.url}/v1/sandbox/settlement", json={"omit": ["x"]}),
        ):
            assert (answer.status_code, answer.json()["code"]) == (401, "UNAUTHORIZED")
    assert (await sandbox.faults("GET")).json() == {"omit": [], "extra": []}


async def test_request_faults_apply_to_the_report(sandbox: Sandbox) -> None:
    answer = await sandbox.http.get(f"{sandbox.url}/v1/settlements/{DAY}", headers={"X-Sandbox-Fault": "5xx"})
    assert (answer.status_code, answer.json()["code"]) == (503, "SANDBOX_FAULT")
