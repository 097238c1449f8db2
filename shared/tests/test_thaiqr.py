"""pm_shared.thaiqr: every known PromptPay vector parsed (and regenerated where the tag order is
known), one failing payload per error code, and generate → parse round trips."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    decode_payload,
    encode,
    format_amount,
    format_mobile,
    generate_bill_payment,
    generate_credit_transfer,
    generate_slip_verify,
    infer_proxy_type,
    local_mobile,
    parse,
    parse_amount,
    parse_slip_verify,
    truemoney_wallet,
    with_crc,
)


@dataclass(frozen=True)
class Vector:
    """A known vector: the payload, what parsing must yield, how to regenerate it (or None)."""

    name: str
    payload: str
    expect: dict[str, Any]
    generate: Callable[[], str] | None = field(default=None, compare=False)


def _ct(
    proxy_type: ProxyType, value: str, order: Sequence[str], amount: int | None = None
) -> Callable[[], str]:
    return lambda: generate_credit_transfer(proxy_type, value, amount=amount, order=order)


def _bp(
    biller: str,
    ref1: str,
    ref2: str | None,
    order: Sequence[str],
    amount: int | None = None,
    ref3: str | None = None,
) -> Callable[[], str]:
    return lambda: generate_bill_payment(biller, ref1, ref2, ref3=ref3, amount=amount, order=order)


C58, C53 = ORDER_COUNTRY_FIRST, ORDER_CURRENCY_FIRST


def _mobile(value: str, amount: int | None = None) -> dict[str, Any]:
    return {"kind": "credit_transfer", "proxy_type": "mobile", "proxy_value": value, "amount": amount}


def _id(proxy_type: str, value: str, amount: int | None = None) -> dict[str, Any]:
    return {"kind": "credit_transfer", "proxy_type": proxy_type, "proxy_value": value, "amount": amount}


def _bill(
    biller: str, ref1: str, ref2: str | None, amount: int | None = None, ref3: str | None = None
) -> dict[str, Any]:
    return {
        "kind": "bill_payment",
        "biller_id": biller,
        "ref1": ref1,
        "ref2": ref2,
        "ref3": ref3,
        "amount": amount,
    }


VECTORS = [
    Vector(
        "T1",
        "00020101021129370016A000000677010111011300668012345675802TH530376463046197",
        _mobile("0801234567"),
        _ct("mobile", "0801234567", C58),
    ),
    Vector(
        "T2",
        "00020101021129370016A000000677010111011300668912345675802TH5303764630429C1",
        _mobile("0891234567"),
        _ct("mobile", "+66-89-123-4567", C58),
    ),
    Vector(
        "T3",
        "00020101021129370016A000000677010111021311111111111115802TH530376463047B5A",
        _id("national_id", "1111111111111"),
        _ct("national_id", "1111111111111", C58),
    ),
    Vector(
        "T4",
        "00020101021129370016A000000677010111021301234567890125802TH530376463040CBD",
        _id("national_id", "0123456789012"),
        _ct("national_id", "0123456789012", C58),
    ),
    Vector(
        "T5",
        "00020101021229370016A000000677010111011300660000000005802TH530376454044.226304E469",
        _mobile("0000000000", 422),
        _ct("mobile", "000-000-0000", C58, 422),
    ),
    Vector(
        "T6",
        "00020101021129370016A000000677010111011300668999999995802TH53037646304FE29",
        _mobile("0899999999"),
        _ct("mobile", "0899999999", C58),
    ),
    Vector(
        "T7",
        "00020101021229370016A000000677010111011300668912345675802TH5303764541113371337.756304B7D7",
        _mobile("0891234567", 1337133775),
        _ct("mobile", "089-123-4567", C58, 1337133775),
    ),
    Vector(
        "T8",
        "00020101021229370016A000000677010111021312345678901235802TH53037645406420.006304BF7B",
        _id("national_id", "1234567890123", 42000),
        _ct("national_id", "1234567890123", C58, 42000),
    ),
    Vector(
        "T9",
        "00020101021129390016A00000067701011103150049990002885055802TH530376463041521",
        _id("ewallet", "004999000288505"),
        _ct("ewallet", "004999000288505", C58),
    ),
    Vector(
        "T10",
        "00020101021229390016A00000067701011103150049990002885055802TH530376454071515.756304522C",
        _id("ewallet", "004999000288505", 151575),
        _ct("ewallet", "004999000288505", C58, 151575),
    ),
    Vector(
        "T11",
        "00020101021229370016A000000677010111011300660000000005802TH53037645406100.0063043B7D",
        _mobile("0000000000", 10000),
        _ct("mobile", "0000000000", C58, 10000),
    ),
    Vector(
        "T12",
        "00020101021129370016A0000006770101110113006681222333353037645802TH63041DCF",
        _mobile("0812223333"),
        _ct("mobile", "0812223333", C53),
    ),
    Vector(
        "T13",
        "00020101021229370016A0000006770101110113006681222333353037645802TH540530.0063043CAD",
        _mobile("0812223333", 3000),
        _ct("mobile", "0812223333", C53, 3000),
    ),
    Vector(
        "T14",
        "00020101021129390016A000000677010111031514000080111111153037645802TH63047C0F",
        _id("ewallet", "140000801111111"),
        lambda: generate_credit_transfer("ewallet", truemoney_wallet("0801111111"), order=C53),
    ),
    Vector(
        "T15",
        "00020101021130620016A000000677010112011301122334455660211CUSTOMER0010306INV00153037645802TH62070703SCB6304780E",
        _bill("0112233445566", "CUSTOMER001", "INV001", ref3="SCB"),
        _bp("0112233445566", "CUSTOMER001", "INV001", C53, ref3="SCB"),
    ),
    Vector(
        "T16",
        "00020101021130550016A0000006770101120115099999999999990021211122233344453037645802TH63043EE7",
        _bill("099999999999990", "111222333444", None),
        _bp("099999999999990", "111222333444", None, C53),
    ),
    Vector(
        "T17",
        "00020101021230650016A00000067701011201150994000165501000212123456789012030667042953037645802TH54073649.2263044534",
        _bill("099400016550100", "123456789012", "670429", 364922),
        _bp("099400016550100", "123456789012", "670429", C53, 364922),
    ),
    Vector(
        "T18",
        "00020101021229370016A0000006770101110113006680111111153037645802TH540520.15630442BE",
        _mobile("0801111111", 2015),
        _ct("mobile", "0801111111", C53, 2015),
    ),
    Vector(
        "T19",
        "00020101021229370016A0000006770101110413014123456789053037645406100.005802TH6304901D",
        _id("bank_account", "0141234567890", 10000),
        _ct("bank_account", "0141234567890", ORDER_ASCENDING, 10000),
    ),
    Vector(
        "K1",
        "00020101021130810016A00000067701011201150107536000315080214KB0000016416840320KPS004KB000001641684"
        "31690016A00000067701011301030040214KB0000016416840420KPS004KB00000164168453037645802TH6304A14E",
        _bill("010753600031508", "KB000001641684", "KPS004KB000001641684"),
    ),
    Vector(
        "K2",
        "0002010102110216478772000526340904155303920005264131531343007640052044640122296664800130810016"
        "A00000067701011201150107536000315010214KB0000021987930320EMPKB00000219879300131900016A000000677"
        "01011301030040214KB0000021987930420EMPKB0000021987930010517KB00000219879300151430014A00000000410"
        "1001064169710211123456789015204581253037645802TH5917SOM TUM NAI NEUNG6004CITY62250509515571013070"
        "8422966646304AE9C",
        _bill("010753600031501", "KB000002198793", "EMPKB000002198793001", ref3="42296664")
        | {"merchant_name": "SOM TUM NAI NEUNG", "merchant_city": "CITY", "dynamic": False},
    ),
]

E1 = (
    "000201010211153125000344000203441000000000000065204597253033445802HK5913Test Merchant6002HK6260012000"
    "00000000000000000005200000000000000000000007080000001063045855"
)
S1 = "004000060000010103002021900021231231212000115102TH91049C30"
T18 = next(v.payload for v in VECTORS if v.name == "T18")
N1 = T18[:-4] + "FFFF"


# ---- vectors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS, ids=lambda v: v.name)
def test_vector_parses(vector: Vector) -> None:
    qr = parse(vector.payload)
    for name, value in vector.expect.items():
        assert getattr(qr, name) == value, name
    assert qr.currency == "764"
    assert qr.country == "TH"
    assert encode(qr.tags) == vector.payload  # the raw tags are the payload, in wire order
    assert qr.dynamic == (qr.amount is not None)


@pytest.mark.parametrize("vector", [v for v in VECTORS if v.generate is not None], ids=lambda v: v.name)
def test_vector_generates(vector: Vector) -> None:
    assert vector.generate is not None
    assert vector.generate() == vector.payload


def test_vector_k_keeps_other_templates() -> None:
    qr = parse(VECTORS[-1].payload)
    assert [t.tag for t in qr.tags] == [
        "00",
        "01",
        "02",
        "04",
        "15",
        "30",
        "31",
        "51",
        "52",
        "53",
        "58",
        "59",
        "60",
        "62",
        "63",
    ]
    assert qr.tag("52") == "5812"
    kshop = qr.tag("31")
    assert kshop is not None and kshop.startswith("0016A000000677010113")
    assert qr.tag("99") is None


def test_vector_e1_is_valid_emvco_but_not_thai() -> None:
    items = decode_payload(E1)
    assert [t.tag for t in items] == ["00", "01", "15", "52", "53", "58", "59", "60", "62", "63"]
    with pytest.raises(ThaiQrError) as err:
        parse(E1)
    assert err.value.code == "not_thai"


def test_vector_s1_slip_verify() -> None:
    slip = parse_slip_verify(S1)
    assert (slip.sending_bank, slip.trans_ref, slip.country) == ("002", "0002123123121200011", "TH")
    assert generate_slip_verify("002", "0002123123121200011") == S1
    with pytest.raises(ThaiQrError) as err:
        parse_slip_verify(S1[:-4] + "0000")
    assert err.value.code == "bad_crc"


def test_vector_n1_bad_crc() -> None:
    with pytest.raises(ThaiQrError) as err:
        parse(N1)
    assert err.value.code == "bad_crc"
    assert "42BE" in err.value.message


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


def test_parser_tolerates_lowercase_crc_and_surrounding_whitespace() -> None:
    assert parse(VECTORS[0].payload + "\n").proxy_value == "0801234567"
    t2 = VECTORS[1].payload  # CRC 29C1 has a letter to lower-case
    assert parse(t2[:-4] + t2[-4:].lower()).proxy_value == "0891234567"


# ---- one failure per error code --------------------------------------------------------------------


def _signed(*items: Tlv) -> str:
    return with_crc(encode(list(items)))


TAG29 = Tlv("29", encode([Tlv("00", AID_CREDIT_TRANSFER), Tlv("01", "0066812345678")]))
HEAD = (Tlv("00", "01"), Tlv("01", "11"))
THB = Tlv("53", "764")


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        pytest.param(N1, "bad_crc", id="crc-mismatch"),
        pytest.param(T18[:-8] + "630342B", "bad_crc", id="crc-unpadded"),
        pytest.param(T18[:-4] + "42BG", "bad_crc", id="crc-not-hex"),
        pytest.param(with_crc(encode([*HEAD, TAG29, THB])) + "5802TH", "bad_crc", id="crc-not-last"),
        pytest.param(encode([*HEAD, TAG29, THB]), "missing_tag", id="crc-missing"),
        pytest.param(T18[:-12], "truncated", id="cut-mid-value"),
        pytest.param(T18[:-8] + "63", "truncated", id="cut-mid-header"),
        pytest.param(T18.replace("5802TH", "5809TH"), "truncated", id="length-too-long"),
        pytest.param(
            _signed(*HEAD, Tlv("29", "0016A00000067701011101130066812345678"[:-3]), THB),
            "truncated",
            id="nested-truncated",
        ),
        pytest.param(T18.replace("5802TH", "58x2TH"), "bad_length", id="length-not-numeric"),
        pytest.param(
            with_crc("000201010211" + TAG29.tag + "37" + TAG29.value + "530376458" + "00"),
            "bad_length",
            id="length-zero",
        ),
        pytest.param(with_crc("000201AB02xx"), "bad_tag", id="tag-not-numeric"),
        pytest.param(_signed(*HEAD, TAG29, THB, THB), "bad_tag", id="tag-twice"),
        pytest.param(T18.replace("TH", "T\u00c9"), "bad_format", id="not-ascii"),
        pytest.param(_signed(Tlv("01", "11"), Tlv("00", "01"), TAG29, THB), "bad_format", id="00-not-first"),
        pytest.param(_signed(Tlv("00", "02"), TAG29, THB), "bad_format", id="00-not-01"),
        pytest.param(
            _signed(
                *HEAD, Tlv("29", encode([Tlv("00", "A000000677010199"), Tlv("01", "0066812345678")])), THB
            ),
            "unknown_aid",
            id="tag29-unknown-aid",
        ),
        pytest.param(
            _signed(
                *HEAD,
                Tlv(
                    "30",
                    encode([Tlv("00", "A000000677010111"), Tlv("01", "099400016550100"), Tlv("02", "R1")]),
                ),
                THB,
            ),
            "unknown_aid",
            id="tag30-unknown-aid",
        ),
        pytest.param(
            _signed(*HEAD, Tlv("29", encode([Tlv("01", "0066812345678")])), THB),
            "missing_tag",
            id="tag29-no-aid",
        ),
        pytest.param(
            _signed(*HEAD, Tlv("29", encode([Tlv("00", AID_CREDIT_TRANSFER)])), THB),
            "missing_tag",
            id="tag29-no-proxy",
        ),
        pytest.param(
            _signed(*HEAD, Tlv("30", encode([Tlv("00", AID_BILL_PAYMENT), Tlv("02", "R1")])), THB),
            "missing_tag",
            id="tag30-no-biller",
        ),
        pytest.param(
            _signed(
                *HEAD, Tlv("30", encode([Tlv("00", AID_BILL_PAYMENT), Tlv("01", "099400016550100")])), THB
            ),
            "missing_tag",
            id="tag30-no-ref1",
        ),
        pytest.param(
            _signed(*HEAD, Tlv("30", encode([Tlv("01", "099400016550100"), Tlv("02", "R1")])), THB),
            "missing_tag",
            id="tag30-no-aid",
        ),
        pytest.param(_signed(*HEAD, TAG29, Tlv("58", "TH")), "missing_tag", id="no-currency"),
        pytest.param(_signed(*HEAD, TAG29, THB, Tlv("54", "72.985")), "bad_amount", id="amount-3-decimals"),
        pytest.param(_signed(*HEAD, TAG29, THB, Tlv("54", "abc")), "bad_amount", id="amount-not-numeric"),
        pytest.param(_signed(*HEAD, TAG29, THB, Tlv("54", "0.00")), "bad_amount", id="amount-zero"),
        pytest.param(E1, "not_thai", id="no-promptpay-template"),
        pytest.param(_signed(*HEAD, TAG29, Tlv("53", "840")), "not_thai", id="currency-usd"),
        pytest.param(
            _signed(
                *HEAD,
                TAG29,
                Tlv(
                    "30", encode([Tlv("00", AID_BILL_PAYMENT), Tlv("01", "099400016550100"), Tlv("02", "R1")])
                ),
                THB,
            ),
            "ambiguous",
            id="tag29-and-tag30",
        ),
        pytest.param(
            _signed(
                *HEAD,
                Tlv(
                    "29",
                    encode(
                        [
                            Tlv("00", AID_CREDIT_TRANSFER),
                            Tlv("01", "0066812345678"),
                            Tlv("02", "1234567890123"),
                        ]
                    ),
                ),
                THB,
            ),
            "ambiguous",
            id="two-proxies",
        ),
        pytest.param(_signed(Tlv("00", "01"), Tlv("01", "13"), TAG29, THB), "bad_value", id="initiation-13"),
        pytest.param(
            _signed(
                *HEAD, Tlv("29", encode([Tlv("00", AID_CREDIT_TRANSFER), Tlv("01", "006681234567")])), THB
            ),
            "bad_value",
            id="mobile-12",
        ),
        pytest.param(
            _signed(
                *HEAD, Tlv("29", encode([Tlv("00", AID_CREDIT_TRANSFER), Tlv("02", "12345678901AB")])), THB
            ),
            "bad_value",
            id="id-letters",
        ),
        pytest.param(
            _signed(*HEAD, Tlv("29", encode([Tlv("00", AID_CREDIT_TRANSFER), Tlv("03", "12345")])), THB),
            "bad_value",
            id="ewallet-short",
        ),
    ],
)
def test_parse_rejects(payload: str, code: str) -> None:
    with pytest.raises(ThaiQrError) as err:
        parse(payload)
    assert err.value.code == code
    assert err.value.message
    assert str(err.value).startswith(code + ": ")


@pytest.mark.parametrize(
    ("build", "code"),
    [
        pytest.param(lambda: generate_credit_transfer("national_id", "12345"), "bad_value", id="id-short"),
        pytest.param(lambda: generate_credit_transfer("ewallet", "12345"), "bad_value", id="ewallet-short"),
        pytest.param(lambda: generate_credit_transfer("bank_account", "01"), "bad_value", id="account-short"),
        pytest.param(lambda: generate_credit_transfer("mobile", "12"), "bad_value", id="mobile-short"),
        pytest.param(lambda: generate_credit_transfer("ota", ""), "bad_value", id="ota-empty"),
        pytest.param(lambda: generate_credit_transfer("iban", "1"), "bad_value", id="proxy-type"),  # type: ignore[arg-type]
        pytest.param(
            lambda: generate_credit_transfer("mobile", "0812345678", amount=0), "bad_amount", id="amount-zero"
        ),
        pytest.param(
            lambda: generate_credit_transfer("mobile", "0812345678", merchant=Merchant(name="X" * 26)),
            "bad_value",
            id="name-long",
        ),
        pytest.param(lambda: generate_bill_payment("12345", "R1"), "bad_value", id="biller-short"),
        pytest.param(lambda: generate_bill_payment("099400016550100", ""), "bad_value", id="ref1-empty"),
        pytest.param(lambda: generate_bill_payment("099400016550100", "R" * 21), "bad_value", id="ref1-long"),
        pytest.param(
            lambda: generate_bill_payment("099400016550100", "R1", "ref\u00e9"),
            "bad_value",
            id="ref2-not-ascii",
        ),
        pytest.param(
            lambda: generate_bill_payment("099400016550100", "R1", ref3="x" * 26), "bad_value", id="ref3-long"
        ),
        pytest.param(lambda: encode([Tlv("5", "x")]), "bad_tag", id="encode-tag"),
        pytest.param(lambda: encode([Tlv("59", "x" * 100)]), "bad_length", id="encode-too-long"),
    ],
)
def test_generate_rejects(build: Callable[[], str], code: str) -> None:
    with pytest.raises(ThaiQrError) as err:
        build()
    assert err.value.code == code


def test_error_is_permanent() -> None:
    from pm_shared.errors import PermanentError

    assert issubclass(ThaiQrError, PermanentError)
