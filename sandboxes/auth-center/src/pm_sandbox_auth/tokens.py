"""The sandbox's user tokens: `<user id>.<expiry, unix seconds>.<hex HMAC-SHA256(secret, id.expiry)>`.

Opaque to everyone but the Auth Center (a real one issues its own kind): what matters to PM is that
only the Auth Center can make one, and that nginx learns the user id from it through `/verify`.
"""

from __future__ import annotations

import hashlib
import hmac
import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(?!\n)$")


def _mac(secret: str, user_id: str, expires: int) -> str:
    return hmac.new(secret.encode(), f"{user_id}.{expires}".encode(), hashlib.sha256).hexdigest()


def issue(secret: str, user_id: str, expires: int) -> str:
    if not _ID.match(user_id):
        raise ValueError(f"not a user id: {user_id!r}")
    return f"{user_id}.{expires}.{_mac(secret, user_id, expires)}"


def verify(secret: str, token: str, now: float) -> str | None:
    """The user id `token` stands for, or None when it is forged, malformed or expired."""
    parts = token.rsplit(".", 2)
    if len(parts) != 3:
        return None
    user_id, expires_text, mac = parts
    digits = expires_text.isascii() and expires_text.isdigit() and len(expires_text) <= 12
    if not _ID.match(user_id) or not digits:
        return None
    expires = int(expires_text)
    if not hmac.compare_digest(mac.encode("latin-1", "replace"), _mac(secret, user_id, expires).encode()):
        return None
    return user_id if now < expires else None
