"""`pm_shared.psp.settlement`: the strict report parser, and fetching reports from both PSP sandboxes
over real HTTP, authenticated as the adapters call them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import httpx
import msgspec
import pytest

from pm_adapter_ipps.client import IppsClient
from pm_adapter_qp.client import QpClient
from pm_sandbox_ipps.app import create_app as create_ipps
from pm_sandbox_ipps.settings import Settings as IppsSettings
from pm_sandbox_qp.app import create_app as create_qp
from pm_sandbox_qp.settings import Settings as QpSettings
from pm_shared.messages import Party, psp_key
from pm_shared.psp import settlement
from pm_shared.psp.settlement import SettlementFetchError, SettlementLine, SettlementReportError
from pm_tools import processes
from pm_tools.testing.asgi import serve

HEADER = "psp_reference,merchant_reference,type,amount,currency,fee,status,settled_at"
GOOD = "trf_1,01J.payout,payout,12345,THB,0,SUCCEEDED,2025-03-14T10:00:00.000Z"
DAY = date(2025, 3, 14)
IPPS_SECRET = "ipps-request-secret"
QP_SECRET = "qp-bearer-secret"


def report(*lines: str) -> str:
    return "\n".join((HEADER, *lines)) + "\n"


# --- the parser -------------------------------------------------------------------------------------


def test_a_rendered_report_parses_back_to_its_lines() -> None:
    lines = [
        SettlementLine(
            psp_reference="trf_1",
            merchant_reference="01J.payout",
            type="payout",
            amount=12_345,
            currency="THB",
            fee=0,
            status="SUCCEEDED",
            settled_at=datetime(2025, 3, 14, 10, 0, 0, 123_000, tzinfo=UTC),
        ),
        SettlementLine(
            psp_reference="AD1",
            merchant_reference='odd, "quoted" ref',
            type="collection",
            amount=1,
            currency="RUB",
            fee=7,
            status="FAILED",
            settled_at=datetime(2025, 3, 14, 23, 59, 59, tzinfo=UTC),
        ),
    ]
    text = settlement.render(lines)
    assert text.startswith(HEADER + "\n")
    assert text.splitlines()[1] == "trf_1,01J.payout,payout,12345,THB,0,SUCCEEDED,2025-03-14T10:00:00.123Z"
    assert settlement.parse(text) == lines
    assert settlement.parse(text, DAY) == lines
    assert settlement.render([]) == HEADER + "\n"
    assert settlement.parse(HEADER) == []


def test_a_report_with_a_bom_crlf_and_an_explicit_offset_parses() -> None:
    text = "\ufeff" + HEADER + "\r\n" + GOOD.replace(".000Z", "+00:00") + "\r\n"
    (line,) = settlement.parse(text)
    assert line.settled_at == datetime(2025, 3, 14, 10, tzinfo=UTC)
    assert (line.merchant_reference, line.amount, line.fee, line.status) == (
        "01J.payout",
        12_345,
        0,
        "SUCCEEDED",
    )


def bad(column: str, value: str) -> str:
    """GOOD with one column's value replaced."""
    fields = GOOD.split(",")
    fields[settlement.COLUMNS.index(column)] = value
    return ",".join(fields)


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("", 1, None, "header"),
        ("psp_reference,merchant_reference\n" + GOOD, 1, None, "header"),
        (HEADER.replace("fee,status", "status,fee") + "\n", 1, None, "header"),
        (HEADER + ",extra\n", 1, None, "header"),
        (report(GOOD, GOOD + ",surplus"), 3, None, "9 fields"),
        (report(GOOD, "trf_2,k,payout,1"), 3, None, "4 fields"),
        (report(GOOD, "", GOOD), 3, None, "empty line"),
        (report(bad("psp_reference", "")), 2, "psp_reference", "empty"),
        (report(bad("merchant_reference", " k ")), 2, "merchant_reference", "spaces"),
        (report(bad("type", "refund")), 2, "type", "refund"),
        (report(bad("amount", "123.45")), 2, "amount", "whole"),
        (report(bad("amount", "-5")), 2, "amount", "whole"),
        (report(bad("amount", "+5")), 2, "amount", "whole"),
        (report(bad("amount", "007")), 2, "amount", "whole"),
        (report(bad("amount", "")), 2, "amount", "whole"),
        (report(GOOD, GOOD, bad("fee", "1e3")), 4, "fee", "whole"),
        (report(bad("currency", "thb")), 2, "currency", "ISO 4217"),
        (report(bad("status", "SUCCESS")), 2, "status", "SUCCESS"),
        (report(bad("status", "succeeded")), 2, "status", "succeeded"),
        (report(bad("settled_at", "2025-03-14")), 2, "settled_at", "ISO-8601"),
        (report(bad("settled_at", "yesterday")), 2, "settled_at", "ISO-8601"),
        (report(bad("settled_at", "2025-03-14T10:00:00")), 2, "settled_at", "UTC"),
        (report(bad("settled_at", "2025-03-14T17:00:00+07:00")), 2, "settled_at", "UTC"),
        (report(GOOD, 'trf_2,"unterminated,payout,1,THB,0,SUCCEEDED,2025-03-14T10:00:00Z'), 3, None, "CSV"),
        (report('trf_2,"k"x,payout,1,THB,0,SUCCEEDED,2025-03-14T10:00:00Z'), 2, None, "CSV"),
    ],
)
def test_a_bad_report_is_refused_naming_the_line_and_field(
    text: str, line: int, field: str | None, fragment: str
) -> None:
    with pytest.raises(SettlementReportError) as caught:
        settlement.parse(text)
    assert (caught.value.line, caught.value.field) == (line, field)
    assert fragment in str(caught.value)
    assert f"line {line}" in str(caught.value)


def test_a_line_settled_on_another_day_is_refused_when_the_day_is_given() -> None:
    text = report(GOOD, bad("settled_at", "2025-03-15T00:00:00Z"))
    assert len(settlement.parse(text)) == 2
    with pytest.raises(SettlementReportError) as caught:
        settlement.parse(text, DAY)
    assert (caught.value.line, caught.value.field) == (3, "settled_at")


def test_line_numbers_count_physical_lines_through_a_quoted_line_break() -> None:
    text = report(bad("merchant_reference", '"two\nlines"'), bad("amount", "x"))
    with pytest.raises(SettlementReportError) as caught:
        settlement.parse(text)
    assert (caught.value.line, caught.value.field) == (4, "amount")


@pytest.mark.parametrize(
    ("text", "day"), [("2025-03-14", DAY), ("2024-02-29", date(2024, 2, 29)), ("2025-02-29", None)]
)
def test_parse_day_takes_only_yyyy_mm_dd(text: str, day: date | None) -> None:
    assert settlement.parse_day(text) == day
    assert settlement.parse_day(text.replace("-", "")) is None
    assert settlement.report_path(DAY) == "/v1/settlements/2025-03-14"


# --- fetching from the sandboxes --------------------------------------------------------------------


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


@pytest.fixture
def frozen() -> float:
    """The sandboxes' clock in a test: the time it started (their signature checks compare it with the
    real time), standing still, so the day a transaction settles on is known however long it runs."""
    return time.time()


@pytest.fixture
def today(frozen: float) -> date:
    """The UTC day the sandboxes' clock stands on."""
    return datetime.fromtimestamp(frozen, UTC).date()


@pytest.fixture
async def ipps_url(frozen: float) -> AsyncIterator[str]:
    """An IPPS sandbox that takes only requests signed with IPPS_SECRET."""
    async with serve(create_ipps(IppsSettings(auth_secret=IPPS_SECRET), lambda: frozen)) as url:
        yield url


@pytest.fixture
async def qp_url(frozen: float) -> AsyncIterator[str]:
    settings = msgspec.convert({"secret": QP_SECRET}, QpSettings)
    async with serve(create_qp(settings, clock=lambda: frozen)) as url:
        yield url


async def test_fetch_report_signs_for_ipps_and_finds_the_adapters_payout_by_its_key(
    http: httpx.AsyncClient, ipps_url: str, today: date
) -> None:
    # The adapter's own client pays: the key it sends is the line's merchant_reference.
    key = psp_key(uuid.uuid4().hex, "payout")
    async with httpx.AsyncClient(base_url=ipps_url, timeout=10) as adapter_http:
        client = IppsClient(adapter_http, auth_secret=IPPS_SECRET)
        target = Party(kind="promptpay", proxy_type="MSISDN", proxy_value="0812345678")
        inquiry = await client.inquiry(25_000, target)
        transfer = await client.confirm(inquiry.inquiry_id, 25_000, key)
    assert transfer.status == "SUCCESS"

    lines = await settlement.fetch_report(http, "ipps", ipps_url, today, secret=IPPS_SECRET)
    assert [(line.psp_reference, line.merchant_reference, line.type, line.amount) for line in lines] == [
        (transfer.transfer_id, key, "payout", 25_000)
    ]
    assert (lines[0].currency, lines[0].fee, lines[0].status) == ("THB", 0, "SUCCEEDED")
    assert (
        await settlement.fetch_report(http, "ipps", ipps_url + "/", date(2020, 1, 1), secret=IPPS_SECRET)
        == []
    )


async def test_fetch_report_uses_the_bearer_token_for_qp_and_finds_the_adapters_order(
    http: httpx.AsyncClient, qp_url: str, today: date
) -> None:
    order = psp_key(uuid.uuid4().hex, "collect")
    async with httpx.AsyncClient(base_url=qp_url, timeout=10) as adapter_http:
        qr = await QpClient(adapter_http, QP_SECRET).register(order, 1_234_56, "top-up", 600)
    paid = await http.post(
        f"{qp_url}/v1/sandbox/qrs/{qr.qr_id}/pay", headers={"Authorization": f"Bearer {QP_SECRET}"}
    )
    assert paid.json()["status"] == "ACCEPTED"

    (line,) = await settlement.fetch_report(http, "qp", qp_url, today, secret=QP_SECRET)
    assert (line.psp_reference, line.merchant_reference, line.type, line.amount, line.currency) == (
        qr.qr_id,
        order,
        "collection",
        1_234_56,
        "RUB",
    )
    assert (line.fee, line.status, line.settled_at.date()) == (493, "SUCCEEDED", today)


async def test_the_sims_omit_and_extra_reach_a_fetched_report(
    http: httpx.AsyncClient, qp_url: str, today: date
) -> None:
    bearer = {"Authorization": f"Bearer {QP_SECRET}"}
    qr = (await http.post(f"{qp_url}/v1/qrs", json={"order": "o-1", "amount": 100}, headers=bearer)).json()
    await http.post(f"{qp_url}/v1/sandbox/qrs/{qr['qr_id']}/pay", headers=bearer)
    fault = {"omit": ["o-1"], "extra": [{"merchant_reference": "unknown-to-pm", "amount": 5}]}
    assert (await http.post(f"{qp_url}/v1/sandbox/settlement", json=fault, headers=bearer)).status_code == 200
    lines = await settlement.fetch_report(http, "qp", qp_url, today, secret=QP_SECRET)
    assert [(line.merchant_reference, line.amount) for line in lines] == [("unknown-to-pm", 5)]


@pytest.mark.parametrize(("secret", "code"), [("", "INVALID_SIGNATURE"), ("wrong", "INVALID_SIGNATURE")])
async def test_an_unsigned_or_badly_signed_ipps_fetch_is_refused(
    http: httpx.AsyncClient, ipps_url: str, secret: str, code: str
) -> None:
    with pytest.raises(SettlementFetchError) as caught:
        await settlement.fetch_report(http, "ipps", ipps_url, DAY, secret=secret)
    assert (caught.value.http_status, caught.value.code, caught.value.transient) == (401, code, False)


async def test_a_wrong_qp_token_is_refused(http: httpx.AsyncClient, qp_url: str) -> None:
    with pytest.raises(SettlementFetchError) as caught:
        await settlement.fetch_report(http, "qp", qp_url, DAY, secret="nope")
    assert (caught.value.http_status, caught.value.code, caught.value.transient) == (
        401,
        "UNAUTHORIZED",
        False,
    )


async def test_a_psp_error_or_no_psp_is_a_transient_fetch_error(ipps_url: str) -> None:
    async with httpx.AsyncClient(timeout=10, headers={"X-Sandbox-Fault": "server-error"}) as faulty:
        with pytest.raises(SettlementFetchError) as caught:
            await settlement.fetch_report(faulty, "ipps", ipps_url, DAY, secret=IPPS_SECRET)
    assert (caught.value.http_status, caught.value.code, caught.value.transient) == (
        503,
        "SERVER_ERROR",
        True,
    )
    async with httpx.AsyncClient(timeout=10) as http:
        with pytest.raises(SettlementFetchError) as caught:
            await settlement.fetch_report(http, "qp", f"http://127.0.0.1:{processes.free_port()}", DAY)
    assert (caught.value.http_status, caught.value.code, caught.value.transient) == (
        None,
        "UNREACHABLE",
        True,
    )


def answering(status: int, content: str, content_type: str) -> httpx.AsyncClient:
    """A client whose every request gets this answer (a PSP we cannot make misbehave otherwise)."""

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=content, headers={"Content-Type": content_type})

    return httpx.AsyncClient(transport=httpx.MockTransport(handler))


async def test_an_answer_that_is_no_report_is_refused() -> None:
    async with answering(200, '{"lines": []}', "application/json") as client:
        with pytest.raises(SettlementFetchError) as not_csv:
            await settlement.fetch_report(client, "qp", "http://qp.test", DAY)
    assert (not_csv.value.code, not_csv.value.http_status) == ("NOT_CSV", 200)
    async with answering(200, report(GOOD, bad("amount", "1.5")), "text/csv; charset=utf-8") as client:
        with pytest.raises(SettlementReportError) as malformed:
            await settlement.fetch_report(client, "qp", "http://qp.test", DAY)
    assert (malformed.value.line, malformed.value.field) == (3, "amount")
    async with answering(200, report(bad("settled_at", "2025-03-13T23:59:59Z")), "text/csv") as client:
        with pytest.raises(SettlementReportError, match="not on the report's day"):
            await settlement.fetch_report(client, "qp", "http://qp.test", DAY)
    async with answering(404, "<html>no</html>", "text/html") as client:
        with pytest.raises(SettlementFetchError) as missing:
            await settlement.fetch_report(client, "ipps", "http://ipps.test", DAY)
    assert (missing.value.code, missing.value.transient) == ("HTTP_404", False)


async def test_fetch_report_knows_only_ipps_and_qp(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="no settlement reports from PSP 'stripe'"):
        await settlement.fetch_report(http, "stripe", "http://127.0.0.1:9", DAY)
