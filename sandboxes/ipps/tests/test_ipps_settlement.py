"""The IPPS sandbox's daily settlement report and its faults, over real HTTP (uvicorn in this loop)."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest

from pm_sandbox_ipps.app import create_app
from pm_sandbox_ipps.settings import Settings
from pm_shared.psp import ipps_signing as signing
from pm_shared.psp import settlement
from pm_tools.testing.asgi import serve

DAY = date(2025, 3, 14)
HEADER = "psp_reference,merchant_reference,type,amount,currency,fee,status,settled_at"
MOBILE = "0812345678"


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

    async def pay(self, amount: int = 10_000, fault: str = "") -> tuple[str, dict[str, Any]]:
        """Inquiry then confirm under a fresh key; the key and the transfer."""
        body = {"amount": amount, "proxy_type": "MSISDN", "proxy_value": MOBILE}
        inquiry = (await self.http.post(self.url + "/v1/inquiry", json=body)).json()
        key = f"01J{uuid.uuid4().hex[:20]}.payout"
        headers = {"Idempotency-Key": key, **({"X-Sandbox-Fault": fault} if fault else {})}
        confirm = {"inquiry_id": inquiry["inquiry_id"], "amount": amount}
        answer = await self.http.post(self.url + "/v1/transfers", json=confirm, headers=headers)
        assert answer.status_code == 201, answer.text
        transfer: dict[str, Any] = answer.json()
        return key, transfer

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
        return await self.http.request(method, self.url + "/_sim/settlement", json=body)


@pytest.fixture
async def sandbox() -> AsyncIterator[Sandbox]:
    clock = Clock()
    async with (
        serve(create_app(Settings(pending_ms=10), clock)) as url,
        httpx.AsyncClient(timeout=10) as http,
    ):
        yield Sandbox(url, http, clock)


async def test_a_completed_payout_is_listed_with_its_amount_and_our_key(sandbox: Sandbox) -> None:
    key, transfer = await sandbox.pay(12_345)
    assert transfer["status"] == "SUCCESS"
    assert await sandbox.report() == [
        {
            "psp_reference": transfer["transfer_id"],
            "merchant_reference": key,
            "type": "payout",
            "amount": "12345",
            "currency": "THB",
            "fee": "0",
            "status": "SUCCEEDED",
            "settled_at": "2025-03-14T10:00:00.000Z",
        }
    ]
    parsed = settlement.parse(await sandbox.report_text(), DAY)
    assert [(line.merchant_reference, line.amount, line.status) for line in parsed] == [
        (key, 12_345, "SUCCEEDED")
    ]


async def test_a_failed_payout_is_listed_failed_and_a_pending_one_only_once_final(sandbox: Sandbox) -> None:
    failed_key, _ = await sandbox.pay(10_000, "receiver-rejected")
    sandbox.clock.now += 60
    pending_key, pending = await sandbox.pay(20_000, "unknown=1")
    assert pending["status"] == "PENDING"
    lines = await sandbox.report()
    assert [(line["merchant_reference"], line["status"], line["fee"]) for line in lines] == [
        (failed_key, "FAILED", "0")
    ]
    sandbox.clock.now += 60
    for _ in range(2):  # the first status read answers UNKNOWN, the second settles it
        await sandbox.http.get(sandbox.url + "/v1/transfers", params={"idempotency_key": pending_key})
    lines = await sandbox.report()
    assert [(line["merchant_reference"], line["status"], line["settled_at"]) for line in lines] == [
        (failed_key, "FAILED", "2025-03-14T10:00:00.000Z"),
        (pending_key, "SUCCEEDED", "2025-03-14T10:02:00.000Z"),
    ]


async def test_a_payout_finished_on_another_day_is_in_that_days_report_only(sandbox: Sandbox) -> None:
    sandbox.clock.set(datetime(2025, 3, 14, 23, 59, 59, 999_000, tzinfo=UTC))
    late_key, _ = await sandbox.pay(1_000)
    sandbox.clock.set(datetime(2025, 3, 15, 0, 0, tzinfo=UTC))
    next_key, _ = await sandbox.pay(2_000)
    assert [line["merchant_reference"] for line in await sandbox.report(DAY)] == [late_key]
    assert [line["merchant_reference"] for line in await sandbox.report(DAY + timedelta(days=1))] == [
        next_key
    ]
    assert await sandbox.report_text(DAY - timedelta(days=1)) == HEADER + "\n"


async def test_omit_and_extra_alter_the_next_reports_until_cleared(sandbox: Sandbox) -> None:
    kept_key, _ = await sandbox.pay(1_000)
    sandbox.clock.now += 1
    omitted_key, omitted = await sandbox.pay(2_000)
    sandbox.clock.now += 1
    ledger = (await sandbox.http.get(sandbox.url + "/_sim/ledger")).json()
    tomorrow = {"merchant_reference": "ghost-2", "amount": 700, "settled_at": "2025-03-15T02:00:00Z"}
    answer = await sandbox.faults(
        "POST", {"omit": [omitted_key], "extra": [{"merchant_reference": "ghost-1", "amount": 500}, tomorrow]}
    )
    assert answer.status_code == 200
    assert answer.json()["omit"] == [omitted_key] and len(answer.json()["extra"]) == 2
    lines = await sandbox.report()
    assert [line["merchant_reference"] for line in lines] == [kept_key, "ghost-1"]
    ghost = lines[1]
    assert (ghost["type"], ghost["amount"], ghost["currency"], ghost["fee"], ghost["status"]) == (
        "payout",
        "500",
        "THB",
        "0",
        "SUCCEEDED",
    )
    assert ghost["psp_reference"].startswith("trf_") and ghost["settled_at"] == "2025-03-14T10:00:02.000Z"
    assert [line["merchant_reference"] for line in await sandbox.report(DAY + timedelta(days=1))] == [
        "ghost-2"
    ]
    sandbox.clock.now += 1
    added = await sandbox.faults("POST", {"extra": [{"merchant_reference": "ghost-3", "amount": 1}]})
    assert len(added.json()["extra"]) == 3
    assert [line["merchant_reference"] for line in await sandbox.report()] == [kept_key, "ghost-1", "ghost-3"]
    assert (await sandbox.faults("GET")).json() == added.json()

    cleared = await sandbox.faults("DELETE")
    assert cleared.json() == {"omit": [], "extra": []}
    assert [line["merchant_reference"] for line in await sandbox.report()] == [kept_key, omitted_key]
    assert await sandbox.report(DAY + timedelta(days=1)) == []
    # Only the reports were altered: the transfer and the money paid out are as they were.
    assert (await sandbox.http.get(sandbox.url + "/_sim/ledger")).json() == ledger
    found = await sandbox.http.get(f"{sandbox.url}/v1/transfers/{omitted['transfer_id']}")
    assert found.json()["status"] == "SUCCESS"


async def test_an_extra_line_lands_in_the_report_of_its_utc_day(sandbox: Sandbox) -> None:
    await sandbox.faults(
        "POST",
        {"extra": [{"merchant_reference": "ghost", "amount": 9, "settled_at": "2025-03-15T06:30:00+07:00"}]},
    )
    assert await sandbox.report(DAY + timedelta(days=1)) == []
    (line,) = await sandbox.report(DAY)
    assert (line["merchant_reference"], line["settled_at"]) == ("ghost", "2025-03-14T23:30:00.000Z")


@pytest.mark.parametrize("day", ["2025-13-01", "2025-3-14", "20250314", "yesterday", "2025-03-14T00:00"])
async def test_a_malformed_day_is_a_400_problem(sandbox: Sandbox, day: str) -> None:
    answer = await sandbox.http.get(f"{sandbox.url}/v1/settlements/{day}")
    assert (answer.status_code, answer.json()["code"]) == (400, "INVALID_DAY")
    assert answer.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        {"omit": [""]},
        {"extra": [{"amount": 5}]},
        {"extra": [{"merchant_reference": "x", "amount": -1}]},
        {"extra": [{"merchant_reference": "x", "amount": 1, "status": "SUCCESS"}]},
        {"extra": [{"merchant_reference": "x", "amount": 1, "settled_at": "2025-03-14T10:00:00"}]},
        {"surprise": []},
    ],
)
async def test_a_bad_fault_is_a_422_problem_and_changes_nothing(
    sandbox: Sandbox, body: dict[str, Any]
) -> None:
    answer = await sandbox.faults("POST", body)
    assert (answer.status_code, answer.json()["code"]) == (422, "INVALID_REQUEST")
    assert (await sandbox.faults("GET")).json() == {"omit": [], "extra": []}


async def test_with_an_auth_secret_the_report_must_be_signed_like_any_request() -> None:
    async with (
        serve(create_app(Settings(auth_secret="api-secret"), time.time)) as url,
        httpx.AsyncClient(timeout=10) as http,
    ):
        path = f"/v1/settlements/{DAY}"
        unsigned = await http.get(url + path)
        assert (unsigned.status_code, unsigned.json()["code"]) == (401, "INVALID_SIGNATURE")
        now = int(time.time())
        header = signing.sign("api-secret", now, signing.request_message(now, "GET", path, b""))
        signed = await http.get(url + path, headers={signing.HEADER: header})
        assert (signed.status_code, signed.text) == (200, HEADER + "\n")
