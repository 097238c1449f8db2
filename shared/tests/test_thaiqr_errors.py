"""pm_shared.thaiqr's refusals: known invalid vectors (E1 is EMVCo but not Thai, N1 has a bad CRC), one
failing payload per parse error code, one failing input per generator check; the error is permanent."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from pm_shared.thaiqr import (
    AID_BILL_PAYMENT,
    AID_CREDIT_TRANSFER,
    Merchant,
    ThaiQrError,
    Tlv,
    decode_payload,
    encode,
    generate_bill_payment,
    generate_credit_transfer,
    parse,
    with_crc,
)

T18 = "00020101021229370016A0000006770101110113006680111111153037645802TH540520.15630442BE"
"""Known vector T18 (a mobile number with an amount, see test_thaiqr_vectors.py): the payloads below are
cut from it."""

E1 = (
    "000201010211153125000344000203441000000000000065204597253033445802HK5913Test Merchant6002HK6260012000"
    "00000000000000000005200000000000000000000007080000001063045855"
)
"""Known vector E1: a valid EMVCo payload (Hong Kong dollars) without a PromptPay template."""

N1 = T18[:-4] + "FFFF"
"""Known vector N1: T18 with a wrong CRC."""


def test_vector_e1_is_valid_emvco_but_not_thai() -> None:
    items = decode_payload(E1)
    assert [t.tag for t in items] == ["00", "01", "15", "52", "53", "58", "59", "60", "62", "63"]
    with pytest.raises(ThaiQrError) as err:
        parse(E1)
    assert err.value.code == "not_thai"


def test_vector_n1_bad_crc() -> None:
    with pytest.raises(ThaiQrError) as err:
        parse(N1)
    assert err.value.code == "bad_crc"
    assert "42BE" in err.value.message


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
