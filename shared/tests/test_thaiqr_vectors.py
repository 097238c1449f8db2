"""pm_shared.thaiqr on every known PromptPay vector: each one parses (and is regenerated where its tag order
is known), slip-verify payloads too, and the parser tolerates a lower-case CRC and surrounding whitespace."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from pm_shared.thaiqr import (
    ORDER_ASCENDING,
    ORDER_COUNTRY_FIRST,
    ORDER_CURRENCY_FIRST,
    ProxyType,
    ThaiQrError,
    encode,
    generate_bill_payment,
    generate_credit_transfer,
    generate_slip_verify,
    parse,
    parse_slip_verify,
    truemoney_wallet,
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


S1 = "004000060000010103002021900021231231212000115102TH91049C30"


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


def test_vector_s1_slip_verify() -> None:
    slip = parse_slip_verify(S1)
    assert (slip.sending_bank, slip.trans_ref, slip.country) == ("002", "0002123123121200011", "TH")
    assert generate_slip_verify("002", "0002123123121200011") == S1
    with pytest.raises(ThaiQrError) as err:
        parse_slip_verify(S1[:-4] + "0000")
    assert err.value.code == "bad_crc"


def test_parser_tolerates_lowercase_crc_and_surrounding_whitespace() -> None:
    assert parse(VECTORS[0].payload + "\n").proxy_value == "0801234567"
    t2 = VECTORS[1].payload  # CRC 29C1 has a letter to lower-case
    assert parse(t2[:-4] + t2[-4:].lower()).proxy_value == "0891234567"
