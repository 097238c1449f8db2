"""The one error every part of `pm_shared.thaiqr` raises: `ThaiQrError(code, message)`."""

from __future__ import annotations

from typing import Final

from pm_shared.errors import PermanentError

BAD_CRC: Final = "bad_crc"
"""Tag 63 is not last, not 4 hex digits, or does not match the payload."""
TRUNCATED: Final = "truncated"
"""A TLV header or value runs past the end of its template."""
BAD_LENGTH: Final = "bad_length"
"""A length field is not two decimal digits, or is 00."""
BAD_TAG: Final = "bad_tag"
"""A tag id is not two decimal digits, or a tag appears twice in one template."""
BAD_FORMAT: Final = "bad_format"
"""Not printable ASCII, or tag 00 is not first with value 01."""
UNKNOWN_AID: Final = "unknown_aid"
"""A Tag 29 or Tag 30 template carries an AID this library does not know."""
MISSING_TAG: Final = "missing_tag"
"""A mandatory tag or sub-tag is absent."""
BAD_AMOUNT: Final = "bad_amount"
"""Tag 54 is not a positive decimal with at most 2 decimals, or an amount to encode is out of range."""
BAD_VALUE: Final = "bad_value"
"""A proxy, biller id or reference does not have the shape the format gives it."""
NOT_THAI: Final = "not_thai"
"""No PromptPay template (29/30), or a currency other than THB (764)."""
AMBIGUOUS: Final = "ambiguous"
"""Both Tag 29 and Tag 30, or more than one proxy inside Tag 29."""


class ThaiQrError(PermanentError):
    """A Thai QR payload (or the input to build one) is invalid; `code` says how, `message` says where."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
