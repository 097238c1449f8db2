"""The parameters several API routes share (`pm_gateway.endpoints.Param`): ids, paging, the
Idempotency-Key, `Prefer`, the front door's headers; and the problem codes several routes share."""

from __future__ import annotations

import uuid
from typing import Annotated

import msgspec

from pm_client.api import ID_PATTERN, Id, RuleId
from pm_gateway.endpoints import Param

LIST_LIMIT_MAX = 200
IDEMPOTENCY_KEY_MAX = 255
ID_RULE = f"An id: {ID_PATTERN} (1–64 characters, a letter or digit first)."
IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    "Same key and body: the same intent. 1–255 printable ASCII characters (space included).",
    Annotated[str, msgspec.Meta(min_length=1, max_length=IDEMPOTENCY_KEY_MAX, pattern=r"^[ -~]+(?!\n)$")],
    required=True,
    code="idempotency_key_invalid",
    missing_code="idempotency_key_missing",
)
ME_IDEMPOTENCY_KEY_MAX = 128
ME_IDEMPOTENCY = Param(
    "Idempotency-Key",
    "header",
    "Same key and body: the same intent (keys are the user's own). 1–128 printable ASCII characters.",
    Annotated[str, msgspec.Meta(min_length=1, max_length=ME_IDEMPOTENCY_KEY_MAX, pattern=r"^[ -~]+(?!\n)$")],
    required=True,
    code="idempotency_key_invalid",
    missing_code="idempotency_key_missing",
)
PREFER = Param(
    "Prefer",
    "header",
    "`wait=N` (N ≤ 30; larger is read as 30): answer once the intent is terminal or after N s.",
    Annotated[str, msgspec.Meta(max_length=200, pattern=r"^[ -~]*(?!\n)$")],
)
LIMIT = Param(
    "limit",
    "query",
    f"Page size, 1–{LIST_LIMIT_MAX} (default 50), ASCII digits.",
    Annotated[int, msgspec.Meta(ge=1, le=LIST_LIMIT_MAX)],
    code="limit_invalid",
    default=50,
)
CURSOR = Param(
    "cursor",
    "query",
    "`nextCursor` of the previous page (opaque, base64url).",
    Annotated[str, msgspec.Meta(min_length=1, max_length=400, pattern=r"^[A-Za-z0-9_-]+(?!\n)$")],
    code="cursor_invalid",
)
OWNER = Param("owner_id", "path", f"The owner's id. {ID_RULE}", Id, required=True)
MERCHANT = Param("merchant_id", "path", f"The merchant id. {ID_RULE}", Id, required=True)
REQUEST = Param(
    "request_id",
    "path",
    "The payment request's id (a UUID); one that is not names none (404).",
    uuid.UUID,
    required=True,
    status=404,
    code="payment_request_not_found",
)
ME = (
    Param(
        "X-PM-Proxy-Secret",
        "header",
        "Added by the front door (nginx); a request without it never speaks for a user.",
        Annotated[str, msgspec.Meta(min_length=1, max_length=256, pattern=r"^[!-~]+(?!\n)$")],
        required=True,
        status=401,
        code="proxy_secret_invalid",
        missing_status=401,
        missing_code="proxy_secret_invalid",
    ),
    Param(
        "X-PM-User",
        "header",
        "The user the Auth Center vouched for, set by the front door (a client's own is overwritten). "
        + ID_RULE,
        Id,
        required=True,
        status=401,
        code="user_invalid",
        missing_status=401,
        missing_code="user_missing",
    ),
)
KEY = Param("key_id", "path", f"The key id. {ID_RULE}", Id, required=True)
RULE = Param("rule_id", "path", "The rule id: lower-case letters, digits, `_ . -`.", RuleId, required=True)
INTENT = Param(
    "intent_id",
    "path",
    "The intent id (a UUID); one that is not a UUID names no intent (404).",
    uuid.UUID,
    required=True,
    status=404,
    code="intent_not_found",
)
CHANNEL = Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,40}(?!\n)$")]
BUSY = ("backpressure",)
PARTY_RULES = ("invalid_parties", "invalid_thai_qr", "qr_amount_mismatch", "currency_unsupported")
