"""pm_shared.thaiqr's building blocks (CRC, TLV, amounts in satang, proxy values) and generate → parse round
trips of credit transfers and bill payments, in any tag order."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from pm_shared.thaiqr import (
    AID_BILL_PAYMENT,
    AID_BILL_PAYMENT_CROSS_BORDER,
    AID_CREDIT_TRANSFER,
    AID_CREDIT_TRANSFER_OTA,
    ORDER_ASCENDING,
    ORDER_COUNTRY_FIRST,
    ORDER_CURRENCY_FIRST,
    Merchant,
    ProxyType,
    ThaiQr,
    ThaiQrError,
    Tlv,
    crc16,
    decode,
    encode,
    format_amount,
    format_mobile,
    generate_bill_payment,
    generate_credit_transfer,
    infer_proxy_type,
    local_mobile,
    parse,
    parse_amount,
    truemoney_wallet,
    with_crc,
)

# ---- CRC, TLV, amounts -----------------------------------------------------------------------------


def test_crc_check_value_and_kittinan_vectors() -> None:
    assert crc16("123456789") == "29B1"
    assert crc16("00020101021129370016A000000677010111011300668999999995802TH53037646304") == "FE29"
    assert crc16("") == "FFFF"


def test_tlv_round_trip_and_nesting() -> None:
    inner = encode([Tlv("00", "A000000677010111"), Tlv("01", "0066812345678")])
    assert inner == "0016A00000067701011101130066812345678"
    assert decode(inner) == (Tlv("00", "A000000677010111"), Tlv("01", "0066812345678"))
    assert decode("") == ()


@pytest.mark.parametrize(
    ("text", "satang"),
    [
        ("4.22", 422),
        ("420.00", 42000),
        ("13371337.75", 1337133775),
        ("100", 10000),
        ("99.5", 9950),
        ("0.01", 1),
    ],
)
def test_amount_parses_to_satang(text: str, satang: int) -> None:
    assert parse_amount(text) == satang


@pytest.mark.parametrize(
    "text", ["72.985", "-1.00", "1e3", "1,000.00", "", ".50", "1.", "0.00", "0", " 1.00"]
)
def test_amount_rejected(text: str) -> None:
    with pytest.raises(ThaiQrError) as err:
        parse_amount(text)
    assert err.value.code == "bad_amount"


def test_amount_formats() -> None:
    assert format_amount(1) == "0.01"
    assert format_amount(42000) == "420.00"
    assert format_amount(999_999_999_999) == "9999999999.99"
    for bad in (0, -5, 1_000_000_000_000, True, 4.22):
        with pytest.raises(ThaiQrError) as err:
            format_amount(bad)  # type: ignore[arg-type]
        assert err.value.code == "bad_amount"


# ---- proxies ---------------------------------------------------------------------------------------


def test_mobile_forms() -> None:
    assert format_mobile("081-234-5678") == "0066812345678"
    assert format_mobile("+66 81 234 5678") == "0066812345678"
    assert format_mobile("0066812345678") == "0066812345678"
    assert local_mobile("0066812345678") == "0812345678"
    assert local_mobile("0012345678901") == "0012345678901"
    assert truemoney_wallet("0801111111") == "140000801111111"
    for bad in ("12345678", "0812345678901234", "phone"):
        with pytest.raises(ThaiQrError) as err:
            format_mobile(bad)
        assert err.value.code == "bad_value"


def test_infer_proxy_type() -> None:
    assert infer_proxy_type("1-2345-67890-12-3") == "national_id"
    assert infer_proxy_type("004999000288505") == "ewallet"
    assert infer_proxy_type("081-234-5678") == "mobile"


# ---- round trips -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "order", [ORDER_ASCENDING, ORDER_COUNTRY_FIRST, ORDER_CURRENCY_FIRST, ("60", "59", "58", "54", "53")]
)
@pytest.mark.parametrize(
    ("proxy_type", "value", "normalised"),
    [
        ("mobile", "+66-81-234-5678", "0812345678"),
        ("national_id", "1-2345-67890-12-3", "1234567890123"),
        ("ewallet", "004999000288505", "004999000288505"),
        ("bank_account", "014-1-23456-7890", "0141234567890"),
        ("ota", "OTA12345", "OTA12345"),
    ],
)
@pytest.mark.parametrize("amount", [None, 1, 150_000_00])
def test_credit_transfer_round_trip(
    order: Sequence[str], proxy_type: ProxyType, value: str, normalised: str, amount: int | None
) -> None:
    payload = generate_credit_transfer(
        proxy_type, value, amount=amount, merchant=Merchant("PM WALLET", "BANGKOK"), order=order
    )
    qr = parse(payload)
    assert qr == ThaiQr(
        kind="credit_transfer",
        aid=AID_CREDIT_TRANSFER_OTA if proxy_type == "ota" else AID_CREDIT_TRANSFER,
        currency="764",
        amount=amount,
        proxy_type=proxy_type,
        proxy_value=normalised,
        dynamic=amount is not None,
        country="TH",
        merchant_name="PM WALLET",
        merchant_city="BANGKOK",
        tags=qr.tags,
    )
    assert qr.tags[0] == Tlv("00", "01") and qr.tags[-1].tag == "63"


@pytest.mark.parametrize("cross_border", [False, True])
def test_bill_payment_round_trip(cross_border: bool) -> None:
    payload = generate_bill_payment(
        "099400016550100", "INV20260001", "CUST42", ref3="T3", amount=364922, cross_border=cross_border
    )
    qr = parse(payload)
    assert qr.kind == "bill_payment"
    assert qr.aid == (AID_BILL_PAYMENT_CROSS_BORDER if cross_border else AID_BILL_PAYMENT)
    assert (qr.biller_id, qr.ref1, qr.ref2, qr.ref3, qr.amount) == (
        "099400016550100",
        "INV20260001",
        "CUST42",
        "T3",
        364922,
    )
    assert qr.proxy_type is None and qr.proxy_value is None


def test_parser_accepts_any_tag_order() -> None:
    body = encode(
        [
            Tlv("00", "01"),
            Tlv("60", "BANGKOK"),
            Tlv("54", "20.15"),
            Tlv("58", "TH"),
            Tlv("29", encode([Tlv("01", "0066801111111"), Tlv("00", AID_CREDIT_TRANSFER)])),
            Tlv("53", "764"),
            Tlv("01", "12"),
        ]
    )
    qr = parse(with_crc(body))
    assert (qr.proxy_type, qr.proxy_value, qr.amount, qr.merchant_city) == (
        "mobile",
        "0801111111",
        2015,
        "BANGKOK",
    )
