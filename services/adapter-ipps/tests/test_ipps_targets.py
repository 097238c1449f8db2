"""The payout target as the API shapes it → the IPPS inquiry's target fields (pure, no servers)."""

from __future__ import annotations

import httpx
import pytest

from pm_adapter_ipps.client import IppsClient
from pm_adapter_ipps.targets import InvalidTarget, inquiry_body
from pm_shared import thaiqr
from pm_shared.messages import Party

AMOUNT = 12_345
NATID = "1101700230708"
EWALLET = "140000812345678"
BILLER = "010753600031508"


def promptpay(
    proxy_type: str | None, value: str | None, ref1: str | None = None, ref2: str | None = None
) -> Party:
    return Party(kind="promptpay", proxy_type=proxy_type, proxy_value=value, ref1=ref1, ref2=ref2)


def qr(payload: str | None) -> Party:
    return Party(kind="thaiqr", payload=payload)


@pytest.mark.parametrize(
    ("target", "fields"),
    [
        (promptpay("MSISDN", "0812345678"), {"proxy_type": "MSISDN", "proxy_value": "0812345678"}),
        (promptpay("MSISDN", "66812345678"), {"proxy_type": "MSISDN", "proxy_value": "0812345678"}),
        (promptpay("MSISDN", "0066812345678"), {"proxy_type": "MSISDN", "proxy_value": "0812345678"}),
        (promptpay("NATID", NATID), {"proxy_type": "NATID", "proxy_value": NATID}),
        (promptpay("EWALLET", EWALLET), {"proxy_type": "EWALLETID", "proxy_value": EWALLET}),
        (promptpay("BILLER", BILLER, "INV001"), {"biller_id": BILLER, "ref1": "INV001"}),
        (
            promptpay("BILLER", BILLER, "INV001", "CUST9"),
            {"biller_id": BILLER, "ref1": "INV001", "ref2": "CUST9"},
        ),
    ],
    ids=["msisdn", "msisdn-66", "msisdn-0066", "natid", "ewallet", "biller", "biller-ref2"],
)
def test_promptpay_targets_map_to_the_ipps_wire(target: Party, fields: dict[str, object]) -> None:
    assert inquiry_body(AMOUNT, target) == {"amount": AMOUNT, **fields}


@pytest.mark.parametrize(
    "target",
    [
        promptpay("BILLER", BILLER),
        promptpay("BILLER", BILLER, ""),
        promptpay("TAXID", NATID),
        promptpay("BANKAC", "0141234567890"),
        promptpay(None, "0812345678"),
        promptpay("MSISDN", None),
        promptpay("MSISDN", ""),
        promptpay("MSISDN", "0812345678", "INV001"),
        promptpay("NATID", NATID, None, "X"),
        Party(kind="user", id="u-1"),
        Party(kind="biller", id=BILLER, ref1="INV001"),
    ],
    ids=[
        "biller-no-ref1",
        "biller-empty-ref1",
        "taxid-not-an-api-type",
        "bankac-not-an-api-type",
        "no-type",
        "no-value",
        "empty-value",
        "msisdn-with-ref1",
        "natid-with-ref2",
        "user",
        "biller-kind",
    ],
)
def test_promptpay_targets_ipps_cannot_pay_are_refused(target: Party) -> None:
    with pytest.raises(InvalidTarget):
        inquiry_body(AMOUNT, target)


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        (
            thaiqr.generate_credit_transfer("mobile", "0812345678", amount=AMOUNT),
            {"proxy_type": "MSISDN", "proxy_value": "0812345678"},
        ),
        (
            thaiqr.generate_credit_transfer("national_id", NATID),
            {"proxy_type": "NATID", "proxy_value": NATID},
        ),
        (
            thaiqr.generate_credit_transfer("ewallet", EWALLET, amount=AMOUNT),
            {"proxy_type": "EWALLETID", "proxy_value": EWALLET},
        ),
        (
            thaiqr.generate_credit_transfer("bank_account", "0141234567890"),
            {"proxy_type": "BANKAC", "proxy_value": "0141234567890"},
        ),
        (
            thaiqr.generate_bill_payment(BILLER, "INV001", "CUST9", amount=AMOUNT),
            {"biller_id": BILLER, "ref1": "INV001", "ref2": "CUST9"},
        ),
        (thaiqr.generate_bill_payment(BILLER, "INV001"), {"biller_id": BILLER, "ref1": "INV001"}),
    ],
    ids=["mobile", "national-id-static", "ewallet", "bank-account", "bill-payment", "bill-payment-static"],
)
def test_thai_qr_targets_map_to_the_ipps_wire(payload: str, fields: dict[str, object]) -> None:
    assert inquiry_body(AMOUNT, qr(payload)) == {"amount": AMOUNT, **fields}


def _bad_crc(payload: str) -> str:
    last = "0" if payload[-1] != "0" else "1"
    return payload[:-1] + last


@pytest.mark.parametrize(
    "payload",
    [
        thaiqr.generate_credit_transfer("mobile", "0812345678", amount=AMOUNT + 1),
        thaiqr.generate_bill_payment(BILLER, "INV001", amount=AMOUNT - 1),
        thaiqr.generate_credit_transfer("ota", "OTP123456"),
        thaiqr.generate_bill_payment(BILLER, "INV001", cross_border=True),
        _bad_crc(thaiqr.generate_credit_transfer("mobile", "0812345678")),
        "000201010211not-a-qr",
        "",
        None,
    ],
    ids=[
        "amount-differs",
        "bill-amount-differs",
        "ota",
        "cross-border-biller",
        "bad-crc",
        "garbage",
        "empty",
        "missing",
    ],
)
def test_thai_qr_targets_ipps_cannot_pay_are_refused(payload: str | None) -> None:
    with pytest.raises(InvalidTarget):
        inquiry_body(AMOUNT, qr(payload))


async def test_the_client_refuses_an_invalid_target_without_calling_ipps() -> None:
    sent: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    async with httpx.AsyncClient(transport=httpx.MockTransport(record), base_url="http://ipps") as http:
        with pytest.raises(InvalidTarget):
            await IppsClient(http).inquiry(AMOUNT, promptpay("BILLER", BILLER))
    assert sent == []
