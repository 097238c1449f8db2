"""Tag 54 amounts: ASCII decimal on the wire, integer satang in the program (never floats).

The Thai libraries write two decimals (`4.22`, `420.00`, `13371337.75`) and thai-qr-payment caps the
amount at 9,999,999,999.99. Amounts with more than two decimals are refused rather than rounded
(converting through floats is how libraries get amounts wrong).
"""

from __future__ import annotations

import re
from typing import Final

from pm_shared.thaiqr.errors import BAD_AMOUNT, ThaiQrError

MAX_SATANG: Final = 999_999_999_999
"""9,999,999,999.99 THB, the largest amount the Thai libraries accept."""

_WIRE = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")


def parse_amount(text: str) -> int:
    """`"420.00"` → 42000. Accepts 0–2 decimals (EMVCo allows `"10"` and `"99.5"`); rejects zero."""
    if _WIRE.fullmatch(text) is None:
        raise ThaiQrError(BAD_AMOUNT, f"amount {text!r} is not a decimal with at most 2 decimals")
    whole, _, frac = text.partition(".")
    satang = int(whole) * 100 + int(frac.ljust(2, "0"))
    if not 1 <= satang <= MAX_SATANG:
        raise ThaiQrError(BAD_AMOUNT, f"amount {text!r} is out of range")
    return satang


def format_amount(satang: int) -> str:
    """42000 → `"420.00"`: always two decimals, as every known vector has it."""
    if isinstance(satang, bool) or not isinstance(satang, int):
        raise ThaiQrError(BAD_AMOUNT, f"amount must be an int of satang, got {type(satang).__name__}")
    if not 1 <= satang <= MAX_SATANG:
        raise ThaiQrError(BAD_AMOUNT, f"amount {satang} satang is out of range 1..{MAX_SATANG}")
    return f"{satang // 100}.{satang % 100:02d}"
