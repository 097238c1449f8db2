"""Request signing with a service key (docs/api.md), shared by the gateway and `pm_client.client`.

The signed string is `{timestamp}\\n{nonce}\\n{METHOD}\\n{path?query}\\n{hex sha256(body)}`; the
signature is its hex HMAC-SHA256 under the key's secret. Headers: `X-PM-Key` (key id),
`X-PM-Timestamp` (unix seconds), `X-PM-Nonce`, `X-PM-Signature`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

KEY_HEADER = "X-PM-Key"
TIMESTAMP_HEADER = "X-PM-Timestamp"
NONCE_HEADER = "X-PM-Nonce"
SIGNATURE_HEADER = "X-PM-Signature"

MAX_SKEW_S = 300
"""How far a request's timestamp may be from the gateway's clock, either way."""
NONCE_TTL_S = 600
"""How long a nonce is remembered: longer than the skew window on both sides, so a captured request
can never be replayed while its timestamp is still accepted."""


def string_to_sign(timestamp: str, nonce: str, method: str, target: str, body: bytes) -> bytes:
    """`target` is the path with its query string exactly as sent (`/v1/intents?limit=5`)."""
    digest = hashlib.sha256(body).hexdigest()
    return f"{timestamp}\n{nonce}\n{method.upper()}\n{target}\n{digest}".encode()


def sign(secret: str, timestamp: str, nonce: str, method: str, target: str, body: bytes) -> str:
    message = string_to_sign(timestamp, nonce, method, target, body)
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def matches(secrets_: Iterable[str], signature: str, message: bytes) -> bool:
    """True when `signature` is the HMAC of `message` under one of `secrets_`.

    Every candidate is compared in constant time, and all of them are always computed, so the time
    taken says nothing about which secret (if any) matched.
    """
    found = False
    for secret in secrets_:
        expected = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
        found |= hmac.compare_digest(expected, signature)
    return found


def headers(key_id: str, secret: str, method: str, target: str, body: bytes) -> dict[str, str]:
    """The four auth headers for one request, with a fresh nonce and the current time."""
    timestamp = str(int(time.time()))
    nonce = secrets.token_hex(16)
    return {
        KEY_HEADER: key_id,
        TIMESTAMP_HEADER: timestamp,
        NONCE_HEADER: nonce,
        SIGNATURE_HEADER: sign(secret, timestamp, nonce, method, target, body),
    }
