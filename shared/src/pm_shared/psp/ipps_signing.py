"""The sandbox's HMAC-SHA256 signatures, for callbacks and (optionally) for requests.

Header `X-IPPS-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, message)>` where the message is
- for a callback (sandbox → PM): `f"{t}." + raw body`;
- for a request (PM → sandbox): `f"{t}.{METHOD}.{path?query}." + raw body`.
A receiver recomputes the HMAC over the bytes it got, compares in constant time and refuses a `t`
further than its allowed skew from its own clock (replays).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

HEADER = "X-IPPS-Signature"


def request_message(timestamp: int, method: str, target: str, body: bytes) -> bytes:
    return f"{timestamp}.{method.upper()}.{target}.".encode() + body


def callback_message(timestamp: int, body: bytes) -> bytes:
    return f"{timestamp}.".encode() + body


def sign(secret: str, timestamp: int, message: bytes) -> str:
    """The header value for `message` (built by `request_message` or `callback_message`)."""
    mac = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def parse(header: str) -> tuple[int, str] | None:
    """`(t, v1)` from a header value, or None when it is malformed."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        return int(parts["t"]), parts["v1"]
    except (KeyError, ValueError):
        return None


def verify(secret: str, header: str, message: Callable[[int], bytes], now: float, max_skew_s: int) -> bool:
    """Whether `header` signs `message(t)` for its own `t`, and `t` is within `max_skew_s` of `now`."""
    parsed = parse(header)
    if parsed is None:
        return False
    timestamp, mac = parsed
    if abs(now - timestamp) > max_skew_s:
        return False
    expected = hmac.new(secret.encode(), message(timestamp), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, mac)
