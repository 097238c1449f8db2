"""The sandbox's PromptPay proxy registry: format checks, and who a valid proxy or biller belongs to.

Every well-formed proxy is registered (to a name picked from its digits), unless a fault says otherwise.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from pm_sandbox_ipps.models import InquiryRequest, SandboxError

# (Thai display name, English name), masked as ITMX inquiries return them.
NAMES: tuple[tuple[str, str], ...] = (
    ("นาย สมชาย ใ", "MR. SOMCHAI J"),
    ("นาง สมศรี ด", "MRS. SOMSRI D"),
    ("นาย คิทแคท ช", "MR. KITKAT G"),
    ("นางสาว มาลี ร", "MS. MALEE R"),
)
BANKS: tuple[str, ...] = ("002", "004", "006", "014", "025")
BILLER_REF = re.compile(r"[A-Z0-9]{1,20}")


@dataclass(frozen=True)
class Receiver:
    key: str
    """What identifies the target (`MSISDN:0812345678`, `BILLER:010753600031501:REF1:REF2`)."""
    magic: str
    """The value a magic suffix is read from (the proxy value or ref1; empty for NATID and TAXID)."""
    name_th: str
    name_en: str
    bank: str
    account: str


def thai_id_valid(digits: str) -> bool:
    """The mod-11 check of a 13-digit Thai National ID or tax ID."""
    total = sum(int(d) * (13 - i) for i, d in enumerate(digits[:12]))
    return (11 - total % 11) % 10 == int(digits[12])


def _invalid(detail: str) -> SandboxError:
    return SandboxError(422, "INVALID_PROXY", detail)


def _check_proxy(proxy_type: str, value: str) -> None:
    if not value.isdigit():
        raise _invalid(f"{proxy_type} must be digits only")
    match proxy_type:
        case "MSISDN":
            if len(value) != 10 or value[:2] not in ("06", "08", "09"):
                raise _invalid("MSISDN is 10 digits starting 06, 08 or 09")
        case "NATID" | "TAXID":
            if len(value) != 13 or not thai_id_valid(value):
                raise _invalid(f"{proxy_type} is 13 digits with a valid mod-11 check digit")
        case "EWALLETID":
            if len(value) != 15:
                raise _invalid("EWALLETID is 15 digits")
        case "BANKAC":
            if not 10 <= len(value) <= 12:
                raise _invalid("BANKAC is 10 to 12 digits")


def lookup(request: InquiryRequest) -> Receiver:
    """The receiver `request` targets; a malformed target is a 422 `INVALID_PROXY`/`INVALID_TARGET`."""
    proxy = request.proxy_type is not None or request.proxy_value is not None
    biller = request.biller_id is not None or request.ref1 is not None or request.ref2 is not None
    if proxy == biller:
        raise SandboxError(
            422, "INVALID_TARGET", "give either proxy_type + proxy_value or biller_id + ref1 (+ ref2)"
        )
    if proxy:
        if request.proxy_type is None or not request.proxy_value:
            raise SandboxError(422, "INVALID_TARGET", "proxy_type and proxy_value go together")
        _check_proxy(request.proxy_type, request.proxy_value)
        key, magic = f"{request.proxy_type}:{request.proxy_value}", request.proxy_value
        if request.proxy_type in ("NATID", "TAXID"):
            magic = ""  # real IDs end in anything (0994000165501 is a biller's); use the fault header
    else:
        if request.biller_id is None or not request.ref1:
            raise SandboxError(422, "INVALID_TARGET", "biller_id and ref1 go together")
        if not (request.biller_id.isdigit() and len(request.biller_id) == 15):
            raise _invalid("biller_id is 15 digits")
        for ref in (request.ref1, request.ref2):
            if ref is not None and not BILLER_REF.fullmatch(ref):
                raise _invalid("ref1 and ref2 are 1 to 20 characters A-Z, 0-9")
        key, magic = f"BILLER:{request.biller_id}:{request.ref1}:{request.ref2 or ''}", request.ref1
    digest = hashlib.sha256(key.encode()).digest()
    name_th, name_en = NAMES[digest[0] % len(NAMES)]
    return Receiver(
        key=key,
        magic=magic,
        name_th=name_th,
        name_en=name_en,
        bank=BANKS[digest[1] % len(BANKS)],
        account=f"xxx-x-x{int.from_bytes(digest[2:4], 'big') % 10_000:04d}-x",
    )
