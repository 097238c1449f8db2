"""Standard Webhooks 1.0 signatures (symmetric, `v1`).

A secret is 32 random bytes, shown once as `whsec_<base64>`. The signed content is
`<webhook-id>.<webhook-timestamp>.<body>`, the exact bytes sent; the `webhook-signature` header is a
space-separated list of `v1,<base64 HMAC-SHA256>`, one per secret in force (two during a rotation),
and a receiver accepts a message when any of them matches.
Source: https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Iterable

PREFIX = "whsec_"
SECRET_BYTES = 32
"""Within the 24–64 bytes the specification asks for."""


class SecretFormatError(ValueError):
    """Not a `whsec_<base64>` secret."""


def new_secret() -> bytes:
    return secrets.token_bytes(SECRET_BYTES)


def show(secret: bytes) -> str:
    """The secret as a merchant is given it: `whsec_<base64>`."""
    return PREFIX + base64.b64encode(secret).decode()


def parse(shown: str) -> bytes:
    if not shown.startswith(PREFIX):
        raise SecretFormatError("a webhook secret starts with whsec_")
    try:
        raw = base64.b64decode(shown[len(PREFIX) :], validate=True)
    except ValueError:
        raise SecretFormatError("a webhook secret is whsec_ and base64") from None
    if not 24 <= len(raw) <= 64:
        raise SecretFormatError("a webhook secret is 24 to 64 bytes")
    return raw


def signature(secret: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature of `body` as sent with `webhook_id` at `timestamp` (Unix seconds)."""
    content = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def header(secrets_in_force: Iterable[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header: one signature per secret, the current one first."""
    return " ".join(signature(s, webhook_id, timestamp, body) for s in secrets_in_force)


def headers(
    secrets_in_force: Iterable[bytes], webhook_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": header(secrets_in_force, webhook_id, timestamp, body),
    }
