"""PromptPay QR: Tag 29 credit transfer and Tag 30 bill payment, parsed and generated.

The format (top-level tags, Tag 29, Tag 30, the CRC) is described in docs/psp.md. The parser accepts
any order between tag 00 (first) and tag 63 (last); the generator takes the order as an argument,
since the CRC covers it and the libraries differ.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal, NamedTuple

import msgspec

from pm_shared.thaiqr.amount import format_amount, parse_amount
from pm_shared.thaiqr.errors import (
    AMBIGUOUS,
    BAD_FORMAT,
    BAD_VALUE,
    MISSING_TAG,
    NOT_THAI,
    UNKNOWN_AID,
    ThaiQrError,
)
from pm_shared.thaiqr.tlv import Tlv, decode, decode_payload, encode, with_crc

Kind = Literal["credit_transfer", "bill_payment"]
ProxyType = Literal["mobile", "national_id", "ewallet", "bank_account", "ota"]

AID_CREDIT_TRANSFER: Final = "A000000677010111"
"""Tag 29 AID, PromptPay credit transfer."""
AID_CREDIT_TRANSFER_OTA: Final = "A000000677010114"
"""Tag 29 AID of the variant used with sub 05, "One-Time Authorization"."""
AID_BILL_PAYMENT: Final = "A000000677010112"
"""Tag 30 AID, domestic bill payment."""
AID_BILL_PAYMENT_CROSS_BORDER: Final = "A000000677012006"
"""Tag 30 AID, cross-border bill payment."""
THB: Final = "764"
"""ISO 4217 numeric code of the baht, tag 53."""

_CREDIT_AIDS: Final = frozenset({AID_CREDIT_TRANSFER, AID_CREDIT_TRANSFER_OTA})
_BILL_AIDS: Final = frozenset({AID_BILL_PAYMENT, AID_BILL_PAYMENT_CROSS_BORDER})
_PROXY_SUBS: Final[dict[str, ProxyType]] = {
    "01": "mobile",
    "02": "national_id",
    "03": "ewallet",
    "04": "bank_account",
    "05": "ota",
}
_SUB_OF_PROXY: Final[dict[ProxyType, str]] = {kind: sub for sub, kind in _PROXY_SUBS.items()}

ORDER_ASCENDING: Final = ("52", "53", "54", "58", "59", "60", "62")
"""Optional tags by ascending id, as `uunw/thai-qr-payment` emits them (vector T19)."""
ORDER_COUNTRY_FIRST: Final = ("58", "53", "54", "59", "60", "62")
"""`…58 53 54…`, as `dtinth/promptpay-qr`, `kittinan/php-promptpay-qr`, `jojoee/promptpay` emit (T1–T11)."""
ORDER_CURRENCY_FIRST: Final = ("53", "58", "54", "59", "60", "62")
"""`…53 58 54…`, as `maythiwat/promptparse` emits (T12–T18)."""


class ThaiQr(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed PromptPay QR.

    `proxy_*` are set for a credit transfer, `biller_id`/`ref*` for a bill payment. A mobile proxy is
    normalised to the local form (`0066812345678` on the wire → `0812345678`). `amount` is in satang,
    None for a static QR. `tags` are the top-level data objects in wire order, CRC included.
    """

    kind: Kind
    aid: str
    currency: str
    amount: int | None = None
    proxy_type: ProxyType | None = None
    proxy_value: str | None = None
    biller_id: str | None = None
    ref1: str | None = None
    ref2: str | None = None
    ref3: str | None = None
    dynamic: bool | None = None
    country: str | None = None
    merchant_name: str | None = None
    merchant_city: str | None = None
    tags: tuple[Tlv, ...] = ()

    def tag(self, tag_id: str) -> str | None:
        """The value of top-level tag `tag_id`, or None."""
        for item in self.tags:
            if item.tag == tag_id:
                return item.value
        return None


# ---- proxies -------------------------------------------------------------------------------------


def _digits(text: str) -> str:
    """`text` without anything but ASCII digits."""
    return "".join(ch for ch in text if "0" <= ch <= "9")


def format_mobile(mobile: str) -> str:
    """A mobile number as Tag 29 sub 01 carries it (dtinth `formatTarget`).

    Strip non-digits, replace a leading `0` by `66`, left-pad with `0` to 13: `081-234-5678` and
    `+66-81-234-5678` both give `0066812345678`. The wire form itself is accepted unchanged.
    """
    digits = _digits(mobile)
    if len(digits) == 13 and digits.startswith("0066"):
        return digits
    if not 9 <= len(digits) <= 12:
        raise ThaiQrError(BAD_VALUE, f"mobile {mobile!r} has {len(digits)} digits (9–12 expected)")
    if digits.startswith("0"):
        digits = "66" + digits[1:]
    return digits.rjust(13, "0")


def local_mobile(wire: str) -> str:
    """`0066812345678` → `0812345678`; a value not in the Thai `0066` form is returned as is."""
    return "0" + wire[4:] if wire.startswith("0066") else wire


def truemoney_wallet(mobile: str) -> str:
    """The TrueMoney e-wallet id of a mobile: `14` + the mobile zero-padded to 13 (vector T14)."""
    digits = _digits(mobile)
    if not 9 <= len(digits) <= 13:
        raise ThaiQrError(BAD_VALUE, f"mobile {mobile!r} has {len(digits)} digits")
    return "14" + digits.rjust(13, "0")


def infer_proxy_type(value: str) -> ProxyType:
    """The proxy type from the digit count, as the libraries do: 13 → national/tax id, 15 → e-wallet,
    anything else → mobile."""
    count = len(_digits(value))
    if count == 13:
        return "national_id"
    if count == 15:
        return "ewallet"
    return "mobile"


def _proxy_wire(proxy_type: ProxyType, value: str) -> str:
    """The Tag 29 value of a proxy, checked against the shapes Tag 29 allows."""
    if proxy_type == "mobile":
        return format_mobile(value)
    if proxy_type == "ota":
        if not (value.isascii() and value.isprintable() and 1 <= len(value) <= 99):
            raise ThaiQrError(BAD_VALUE, "OTA value must be 1–99 printable ASCII characters")
        return value
    digits = _digits(value)
    if proxy_type == "national_id" and len(digits) != 13:
        raise ThaiQrError(BAD_VALUE, f"national/tax id {value!r} must have 13 digits")
    if proxy_type == "ewallet" and len(digits) != 15:
        raise ThaiQrError(BAD_VALUE, f"e-wallet id {value!r} must have 15 digits")
    if proxy_type == "bank_account" and not 4 <= len(digits) <= 43:
        raise ThaiQrError(BAD_VALUE, f"bank account {value!r} must be a 3-digit bank code + account number")
    return digits


# ---- parsing -------------------------------------------------------------------------------------


def _sub(items: tuple[Tlv, ...]) -> dict[str, str]:
    """Data objects as a dict (decode has already refused duplicates)."""
    return {item.tag: item.value for item in items}


def _parse_credit_transfer(value: str) -> tuple[str, ProxyType, str]:
    """Tag 29 → (AID, proxy type, normalised proxy value)."""
    sub = _sub(decode(value, where="tag 29"))
    aid = sub.get("00")
    if aid is None:
        raise ThaiQrError(MISSING_TAG, "tag 29 has no AID (sub 00)")
    if aid not in _CREDIT_AIDS:
        raise ThaiQrError(UNKNOWN_AID, f"tag 29 AID {aid} is not PromptPay credit transfer")
    proxies = [(kind, sub[tag]) for tag, kind in _PROXY_SUBS.items() if tag in sub]
    if not proxies:
        raise ThaiQrError(MISSING_TAG, "tag 29 has no proxy (subs 01–05)")
    if len(proxies) > 1:
        raise ThaiQrError(AMBIGUOUS, f"tag 29 has {len(proxies)} proxies")
    kind, raw = proxies[0]
    if kind != "ota" and _digits(raw) != raw:
        raise ThaiQrError(BAD_VALUE, f"tag 29 {kind} {raw!r} is not all digits")
    if kind == "mobile":
        if len(raw) != 13:
            raise ThaiQrError(BAD_VALUE, f"tag 29 mobile {raw!r} is not 13 digits")
        return aid, kind, local_mobile(raw)
    if kind == "national_id" and len(raw) != 13:
        raise ThaiQrError(BAD_VALUE, f"tag 29 national/tax id {raw!r} is not 13 digits")
    if kind == "ewallet" and len(raw) != 15:
        raise ThaiQrError(BAD_VALUE, f"tag 29 e-wallet id {raw!r} is not 15 digits")
    return aid, kind, raw


def _parse_bill_payment(value: str) -> tuple[str, str, str, str | None]:
    """Tag 30 → (AID, biller id, ref1, ref2)."""
    sub = _sub(decode(value, where="tag 30"))
    aid = sub.get("00")
    if aid is None:
        raise ThaiQrError(MISSING_TAG, "tag 30 has no AID (sub 00)")
    if aid not in _BILL_AIDS:
        raise ThaiQrError(UNKNOWN_AID, f"tag 30 AID {aid} is not PromptPay bill payment")
    biller, ref1 = sub.get("01"), sub.get("02")
    if biller is None:
        raise ThaiQrError(MISSING_TAG, "tag 30 has no biller id (sub 01)")
    if ref1 is None:
        raise ThaiQrError(MISSING_TAG, "tag 30 has no reference 1 (sub 02)")
    return aid, biller, ref1, sub.get("03")


def parse(payload: str) -> ThaiQr:
    """Parse and check a PromptPay QR payload (Tag 29 or Tag 30); raise `ThaiQrError` on anything wrong.

    Checks: TLV grammar and CRC (tag 63 last); tag 00 first with `01`; tag 01 `11`/`12`;
    exactly one of Tag 29/30 with a known AID; currency 764; a well-formed amount. Other tags (card
    schemes, Tag 31 KShop, 51, 80, …) are allowed and kept in `tags`.
    """
    items = decode_payload(payload.strip())
    if items[0].tag != "00" or items[0].value != "01":
        raise ThaiQrError(BAD_FORMAT, "payload must start with tag 00 = 01 (payload format indicator)")
    top = _sub(items)
    initiation = top.get("01")
    if initiation is not None and initiation not in ("11", "12"):
        raise ThaiQrError(BAD_VALUE, f"tag 01 is {initiation!r}, not 11 (static) or 12 (dynamic)")
    if "29" in top and "30" in top:
        raise ThaiQrError(AMBIGUOUS, "both tag 29 and tag 30 are present")
    if "29" not in top and "30" not in top:
        raise ThaiQrError(NOT_THAI, "no PromptPay template (tag 29 or 30)")
    currency = top.get("53")
    if currency is None:
        raise ThaiQrError(MISSING_TAG, "no currency (tag 53)")
    if currency != THB:
        raise ThaiQrError(NOT_THAI, f"currency {currency} is not THB (764)")
    amount = parse_amount(top["54"]) if "54" in top else None
    ref3 = _sub(decode(top["62"], where="tag 62")).get("07") if "62" in top else None
    dynamic = None if initiation is None else initiation == "12"
    if "29" in top:
        aid, proxy_type, proxy_value = _parse_credit_transfer(top["29"])
        return ThaiQr(
            kind="credit_transfer",
            aid=aid,
            proxy_type=proxy_type,
            proxy_value=proxy_value,
            currency=currency,
            amount=amount,
            ref3=ref3,
            dynamic=dynamic,
            country=top.get("58"),
            merchant_name=top.get("59"),
            merchant_city=top.get("60"),
            tags=items,
        )
    aid, biller, ref1, ref2 = _parse_bill_payment(top["30"])
    return ThaiQr(
        kind="bill_payment",
        aid=aid,
        biller_id=biller,
        ref1=ref1,
        ref2=ref2,
        currency=currency,
        amount=amount,
        ref3=ref3,
        dynamic=dynamic,
        country=top.get("58"),
        merchant_name=top.get("59"),
        merchant_city=top.get("60"),
        tags=items,
    )


# ---- generation ----------------------------------------------------------------------------------


def _text(name: str, value: str, limit: int) -> str:
    """`value` checked as 1..`limit` printable ASCII characters."""
    if not (value.isascii() and value.isprintable() and 1 <= len(value) <= limit):
        raise ThaiQrError(BAD_VALUE, f"{name} {value!r} must be 1–{limit} printable ASCII characters")
    return value


class Merchant(NamedTuple):
    """The merchant's name (tag 59, up to 25 characters) and city (tag 60, up to 15), either optional."""

    name: str | None = None
    city: str | None = None


def _assemble(
    template: Tlv,
    *,
    amount: int | None,
    ref3: str | None,
    merchant: Merchant | None,
    order: Sequence[str],
) -> str:
    """00, 01, the template, the optional tags in `order` (others after, ascending), then the CRC 63."""
    optional: dict[str, str] = {"53": THB, "58": "TH"}
    if amount is not None:
        optional["54"] = format_amount(amount)
    if merchant is not None and merchant.name is not None:
        optional["59"] = _text("merchant name", merchant.name, 25)
    if merchant is not None and merchant.city is not None:
        optional["60"] = _text("merchant city", merchant.city, 15)
    if ref3 is not None:
        optional["62"] = encode([Tlv("07", _text("reference 3", ref3, 25))])
    ranked = [tag for tag in order if tag in optional]
    ranked += sorted(tag for tag in optional if tag not in ranked)
    # Thai libraries mark a QR dynamic (12) exactly when it carries an amount.
    items = [Tlv("00", "01"), Tlv("01", "11" if amount is None else "12"), template]
    items += [Tlv(tag, optional[tag]) for tag in ranked]
    return with_crc(encode(items))


def generate_credit_transfer(
    proxy_type: ProxyType,
    value: str,
    *,
    amount: int | None = None,
    merchant: Merchant | None = None,
    order: Sequence[str] = ORDER_ASCENDING,
) -> str:
    """A Tag 29 PromptPay payload to `value`; `amount` in satang, None for a static QR.

    `order` places the optional top-level tags (53, 54, 58, …); use `ORDER_COUNTRY_FIRST` or
    `ORDER_CURRENCY_FIRST` to reproduce the libraries' vectors byte for byte.
    """
    if proxy_type not in _SUB_OF_PROXY:
        raise ThaiQrError(BAD_VALUE, f"unknown proxy type {proxy_type!r}")
    aid = AID_CREDIT_TRANSFER_OTA if proxy_type == "ota" else AID_CREDIT_TRANSFER
    template = Tlv(
        "29", encode([Tlv("00", aid), Tlv(_SUB_OF_PROXY[proxy_type], _proxy_wire(proxy_type, value))])
    )
    return _assemble(
        template,
        amount=amount,
        ref3=None,
        merchant=merchant,
        order=order,
    )


_REF = re.compile(r"[\x20-\x7e]{1,20}")


def generate_bill_payment(
    biller_id: str,
    ref1: str,
    ref2: str | None = None,
    *,
    ref3: str | None = None,
    amount: int | None = None,
    merchant: Merchant | None = None,
    cross_border: bool = False,
    order: Sequence[str] = ORDER_ASCENDING,
) -> str:
    """A Tag 30 bill-payment payload: biller id of 13 or 15 digits, ref1 required, ref2
    optional, each reference at most 20 printable characters (SCB's limit); ref3 goes into 62/07."""
    if _digits(biller_id) != biller_id or len(biller_id) not in (13, 15):
        raise ThaiQrError(BAD_VALUE, f"biller id {biller_id!r} must be 13 or 15 digits")
    subs = [
        Tlv("00", AID_BILL_PAYMENT_CROSS_BORDER if cross_border else AID_BILL_PAYMENT),
        Tlv("01", biller_id),
    ]
    for sub, name, ref in (("02", "reference 1", ref1), ("03", "reference 2", ref2)):
        if ref is None:
            continue
        if _REF.fullmatch(ref) is None:
            raise ThaiQrError(BAD_VALUE, f"{name} {ref!r} must be 1–20 printable ASCII characters")
        subs.append(Tlv(sub, ref))
    return _assemble(
        Tlv("30", encode(subs)),
        amount=amount,
        ref3=ref3,
        merchant=merchant,
        order=order,
    )
