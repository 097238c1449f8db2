"""EMVCo TLV: `ID` (2 digits) + `LEN` (2 digits, characters in the value) + `VALUE`.

Templates hold nested TLVs with the same grammar, so `decode` is used for the top level and for
every template's value alike. `decode_payload` also checks the trailing CRC object.
"""

from __future__ import annotations

import msgspec

from pm_shared.thaiqr.crc import crc16
from pm_shared.thaiqr.errors import (
    BAD_CRC,
    BAD_FORMAT,
    BAD_LENGTH,
    BAD_TAG,
    MISSING_TAG,
    TRUNCATED,
    ThaiQrError,
)


class Tlv(msgspec.Struct, frozen=True):
    """One data object as it appeared on the wire: its 2-digit tag and its value."""

    tag: str
    value: str


def _is_digits(text: str) -> bool:
    """True when `text` is made only of ASCII digits (str.isdigit also accepts other scripts)."""
    return text != "" and all("0" <= ch <= "9" for ch in text)


def decode(text: str, *, where: str = "payload") -> tuple[Tlv, ...]:
    """Split `text` into its data objects, in wire order; `where` names the template in errors.

    Raises `ThaiQrError` with `truncated`, `bad_length` or `bad_tag` (a tag id that is not two
    digits, or the same tag twice in one template).
    """
    items: list[Tlv] = []
    seen: set[str] = set()
    pos = 0
    while pos < len(text):
        if len(text) - pos < 4:
            raise ThaiQrError(TRUNCATED, f"{where}: header cut short at offset {pos}")
        tag, length = text[pos : pos + 2], text[pos + 2 : pos + 4]
        if not _is_digits(tag):
            raise ThaiQrError(BAD_TAG, f"{where}: tag id {tag!r} at offset {pos} is not two digits")
        if not _is_digits(length):
            raise ThaiQrError(BAD_LENGTH, f"{where}: tag {tag} has length {length!r}, not two digits")
        size = int(length)
        if size == 0:
            raise ThaiQrError(BAD_LENGTH, f"{where}: tag {tag} has length 00")
        start = pos + 4
        if start + size > len(text):
            raise ThaiQrError(
                TRUNCATED, f"{where}: tag {tag} declares {size} characters, {len(text) - start} remain"
            )
        if tag in seen:
            raise ThaiQrError(BAD_TAG, f"{where}: tag {tag} appears twice")
        seen.add(tag)
        items.append(Tlv(tag, text[start : start + size]))
        pos = start + size
    return tuple(items)


def encode(items: list[Tlv] | tuple[Tlv, ...]) -> str:
    """Serialise data objects in the order given; values must be 1–99 characters."""
    parts: list[str] = []
    for item in items:
        if not (len(item.tag) == 2 and _is_digits(item.tag)):
            raise ThaiQrError(BAD_TAG, f"tag id {item.tag!r} is not two digits")
        if not 1 <= len(item.value) <= 99:
            raise ThaiQrError(
                BAD_LENGTH, f"tag {item.tag}: value of {len(item.value)} characters (1–99 allowed)"
            )
        parts.append(f"{item.tag}{len(item.value):02d}{item.value}")
    return "".join(parts)


def with_crc(body: str, crc_tag: str = "63") -> str:
    """Append the CRC object to `body`; the CRC covers `body` plus the CRC's own tag and length."""
    head = body + crc_tag + "04"
    return head + crc16(head)


def decode_payload(payload: str, crc_tag: str = "63") -> tuple[Tlv, ...]:
    """Decode a whole QR payload and check its CRC object, which must be last.

    Strict: a CRC printed without its leading zeros (a known bank-app quirk) is `bad_crc`.
    Hex digits are compared without regard to case.
    """
    if not payload.isascii() or not payload.isprintable():
        raise ThaiQrError(BAD_FORMAT, "payload is not printable ASCII")
    items = decode(payload)
    tags = [item.tag for item in items]
    if crc_tag not in tags:
        raise ThaiQrError(MISSING_TAG, f"no CRC (tag {crc_tag})")
    last = items[-1]
    if last.tag != crc_tag:
        raise ThaiQrError(BAD_CRC, f"CRC (tag {crc_tag}) is not the last data object")
    if len(last.value) != 4 or any(ch not in "0123456789abcdefABCDEF" for ch in last.value):
        raise ThaiQrError(BAD_CRC, f"CRC {last.value!r} is not 4 hex digits")
    expected = crc16(payload[:-4])
    if last.value.upper() != expected:
        raise ThaiQrError(BAD_CRC, f"CRC is {last.value}, the payload gives {expected}")
    return items
