"""The ITMX slip-verify "mini QR" printed on transfer slips (test vector S1).

Same TLV grammar, but the CRC is tag 91 rather than 63: tag 00 holds sub 00 (API id `000001`),
sub 01 (sending bank code) and sub 02 (transaction reference); tag 51 is the country.
"""

from __future__ import annotations

from typing import Final

import msgspec

from pm_shared.thaiqr.errors import MISSING_TAG, ThaiQrError
from pm_shared.thaiqr.tlv import Tlv, decode, decode_payload, encode, with_crc

SLIP_API_ID: Final = "000001"


class SlipVerify(msgspec.Struct, frozen=True):
    """A parsed slip-verify QR."""

    sending_bank: str
    trans_ref: str
    country: str | None = None


def parse_slip_verify(payload: str) -> SlipVerify:
    """Parse and check (CRC tag 91) a slip-verify mini QR."""
    top = {item.tag: item.value for item in decode_payload(payload.strip(), crc_tag="91")}
    if "00" not in top:
        raise ThaiQrError(MISSING_TAG, "slip QR has no tag 00")
    sub = {item.tag: item.value for item in decode(top["00"], where="tag 00")}
    for tag in ("01", "02"):
        if tag not in sub:
            raise ThaiQrError(MISSING_TAG, f"slip QR tag 00 has no sub {tag}")
    return SlipVerify(sending_bank=sub["01"], trans_ref=sub["02"], country=top.get("51"))


def generate_slip_verify(sending_bank: str, trans_ref: str, country: str = "TH") -> str:
    """The slip-verify mini QR for a transfer (inverse of `parse_slip_verify`)."""
    inner = encode([Tlv("00", SLIP_API_ID), Tlv("01", sending_bank), Tlv("02", trans_ref)])
    return with_crc(encode([Tlv("00", inner), Tlv("51", country)]), crc_tag="91")
