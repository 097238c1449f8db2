"""SBP payment links (`https://qr.nspk.ru/{qr_id}?type=..&bank=..&sum=..&cur=RUB&crc=..`): build and parse.

`crc` is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor) over the whole
link before `&crc=`, as four upper-case hex digits (docs/psp.md: it holds for every real
link known and covers `sum`). `type=02` is a dynamic QR with `sum` (kopecks) and `cur`; `type=01` a
static one without them.
"""

from __future__ import annotations

import re
import secrets
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

import msgspec

HOST = "qr.nspk.ru"
PREFIX = f"https://{HOST}/"
QR_ID = re.compile(r"^[A-Z0-9]{32}$")
BANK = re.compile(r"^[0-9]{8,12}$")
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

QrType = Literal["01", "02"]


class LinkError(ValueError):
    """Not a well-formed SBP payment link, or its crc does not match."""


class Link(msgspec.Struct, frozen=True, kw_only=True):
    qr_id: str
    type: QrType
    bank: str
    amount: int | None = None
    """Kopecks; dynamic links only."""
    currency: str | None = None
    crc: str


def crc16_ccitt_false(data: bytes) -> int:
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def crc_of(link_without_crc: str) -> str:
    return f"{crc16_ccitt_false(link_without_crc.encode('ascii')):04X}"


def new_qr_id(dynamic: bool = True) -> str:
    """`AD` (dynamic) or `AS` (static) and 30 random `[A-Z0-9]`, the shape NSPK issues."""
    return ("AD" if dynamic else "AS") + "".join(secrets.choice(_ALPHABET) for _ in range(30))


def build(qr_id: str, bank: str, amount: int | None = None, currency: str = "RUB") -> str:
    """A dynamic link when `amount` (kopecks) is given, else a static one; with its crc."""
    if not QR_ID.match(qr_id):
        raise LinkError(f"qr id must be 32 characters [A-Z0-9], got {qr_id!r}")
    if not BANK.match(bank):
        raise LinkError(f"bank must be an NSPK member id of 8-12 digits, got {bank!r}")
    if amount is None:
        base = f"{PREFIX}{qr_id}?type=01&bank={bank}"
    else:
        if amount < 1:
            raise LinkError(f"sum must be at least 1 kopeck, got {amount}")
        base = f"{PREFIX}{qr_id}?type=02&bank={bank}&sum={amount}&cur={currency}"
    return f"{base}&crc={crc_of(base)}"


def parse(link: str) -> Link:
    """The parts of a link; raises `LinkError` on a wrong host, a missing part or a bad crc."""
    head, sep, crc = link.rpartition("&crc=")
    if not sep or not re.fullmatch(r"[0-9A-Fa-f]{4}", crc):
        raise LinkError("link has no 4-hex-digit crc at its end")
    if crc_of(head) != crc.upper():
        raise LinkError(f"crc mismatch: link says {crc.upper()}, content gives {crc_of(head)}")
    parts = urlsplit(link)
    if parts.scheme != "https" or parts.netloc != HOST:
        raise LinkError(f"not a {HOST} link")
    qr_id = parts.path.lstrip("/")
    if not QR_ID.match(qr_id):
        raise LinkError(f"qr id must be 32 characters [A-Z0-9], got {qr_id!r}")
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    qr_type = query.get("type")
    bank = query.get("bank", "")
    if not BANK.match(bank):
        raise LinkError(f"bank must be an NSPK member id of 8-12 digits, got {bank!r}")
    if qr_type == "01":
        return Link(qr_id=qr_id, type="01", bank=bank, crc=crc.upper())
    if qr_type != "02":
        raise LinkError(f"type must be 01 or 02, got {qr_type!r}")
    amount = query.get("sum", "")
    if not amount.isdigit() or int(amount) < 1:
        raise LinkError(f"a dynamic link needs sum in kopecks, got {amount!r}")
    return Link(
        qr_id=qr_id,
        type="02",
        bank=bank,
        amount=int(amount),
        currency=query.get("cur", "RUB"),
        crc=crc.upper(),
    )
