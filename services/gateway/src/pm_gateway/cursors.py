"""List cursors: `nextCursor` is base64url of `<created at, ISO 8601>|<row id>`, opaque to clients.

A cursor that is not one this API returned (not base64url, not UTF-8, a time without an offset or
that PostgreSQL cannot hold, an id of the wrong form) is 400 `cursor_invalid` before any query.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime

from pm_gateway.problems import ProblemError

BIGINT_MAX = 2**63 - 1
_IDENT = re.compile(r"[0-9A-Za-z-]{1,40}")
"""A row id as a cursor carries it: a UUID or a bigint's digits."""


def invalid() -> ProblemError:
    return ProblemError(400, "cursor_invalid", "the cursor is not one this API returned")


def encode(at: datetime, ident: object) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{ident}".encode()).decode().rstrip("=")


def decode(value: str) -> tuple[datetime, str]:
    """The time (in UTC) and the id's text; the caller converts the id to its type."""
    try:
        text = base64.urlsafe_b64decode(value.encode("ascii") + b"==").decode()
        at_text, sep, ident = text.partition("|")
        at = datetime.fromisoformat(at_text)
        # An offset is required, and the instant must exist in UTC (0001-01-01T00:00+14:00 does not).
        if not sep or at.tzinfo is None or not _IDENT.fullmatch(ident):
            raise invalid()
        return at.astimezone(UTC), ident
    except (ValueError, OverflowError, binascii.Error, UnicodeError):
        raise invalid() from None


def decode_bigint(value: str) -> tuple[datetime, int]:
    """A cursor whose id is a PostgreSQL bigint (ASCII digits, within its range)."""
    at, ident = decode(value)
    if not (ident.isascii() and ident.isdigit()) or int(ident) > BIGINT_MAX:
        raise invalid()
    return at, int(ident)
