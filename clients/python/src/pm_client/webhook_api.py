"""The HTTP contract of merchants' outbound webhooks (docs/webhooks-api.md): a merchant's endpoints and
their `whsec_` signing secrets, and the delivery log with its attempts and replays. Admin keys only.

An endpoint's secret is in two answers only: its creation's (and that creation's replays, while the
secret has not been rotated since) and a rotation's. Delivery ids are PostgreSQL bigints, JSON
integers like every other row id of the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec

from pm_client.api import LINE_PATTERN, Out, Struct

EventType = Literal["intent.settled", "intent.failed", "refund.settled", "payment_request.confirmed"]
"""The events an endpoint can subscribe to (`pm_shared.webhooks.events`, which the sender reads)."""
EVENT_TYPES: tuple[str, ...] = get_args(EventType)
URL_MAX = 2048
ENDPOINT_ID_PATTERN = r"^ep_[0-9a-f]{24}(?!\n)$"
EndpointId = Annotated[
    str, msgspec.Meta(pattern=ENDPOINT_ID_PATTERN, description="`ep_` and 24 lower-case hex digits.")
]
WebhookUrl = Annotated[
    str,
    msgspec.Meta(
        min_length=8,
        max_length=URL_MAX,
        pattern=r"^[!-~]+(?!\n)$",
        description=(
            "An absolute http(s) URL without user:password, at most 2048 printable ASCII characters; "
            "https unless the gateway allows http, and no private or loopback address unless the "
            "gateway's PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS holds it."
        ),
    ),
]
DeliveryStatus = Literal["PENDING", "DELIVERED", "FAILED"]
DELIVERY_STATUSES: tuple[str, ...] = get_args(DeliveryStatus)
GRACE_MAX_S = 30 * 86_400
Reason = Annotated[str, msgspec.Meta(max_length=500, pattern=LINE_PATTERN)]

# --- endpoints ------------------------------------------------------------------------------------


class CreateWebhookEndpoint(Struct, kw_only=True):
    """`POST /v1/admin/merchants/{merchantId}/webhook-endpoints` (with an `Idempotency-Key`): where
    the merchant's events go, and which of them."""

    url: WebhookUrl
    event_types: Annotated[
        list[EventType], msgspec.Meta(min_length=1, max_length=4, extra_json_schema={"uniqueItems": True})
    ]

    def __post_init__(self) -> None:
        if len(set(self.event_types)) != len(self.event_types):
            raise ValueError("each event type once")


class RotateWebhookSecret(Struct, kw_only=True):
    """`POST /v1/admin/webhook-endpoints/{endpointId}/rotate-secret`: a new secret; the one it replaces
    signs too (a second `v1,` signature) for `graceSeconds` more (0: it stops at once)."""

    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=GRACE_MAX_S)] = 86_400


class DisableWebhookEndpoint(Struct, kw_only=True):
    """`POST /v1/admin/webhook-endpoints/{endpointId}/disable`; the body may be empty."""

    reason: Reason | None = None


class WebhookEndpoint(Out, kw_only=True):
    endpoint_id: str
    merchant_id: str
    url: str
    event_types: list[str]
    status: Literal["ENABLED", "DISABLED"]
    disabled_reason: str | None = None
    failing_since: datetime | None = None
    """The first failed attempt since the last success (the sender's); null while it delivers."""
    previous_secret_until: datetime | None = None
    """While a rotation's grace period lasts, when the previous secret stops signing; else null."""
    created_by: str
    created_at: datetime
    updated_at: datetime


class WebhookEndpointEvent(Out, kw_only=True):
    """One change of an endpoint: created, rotated, disabled, enabled (by an admin key, `pm webhooks
    (<user>)`, or the sender)."""

    action: str
    actor: str
    detail: str | None = None
    at: datetime


class WebhookEndpointDetail(WebhookEndpoint, kw_only=True):
    """`GET /v1/admin/webhook-endpoints/{endpointId}`: the endpoint and its changes, oldest first."""

    history: list[WebhookEndpointEvent] = []


class WebhookEndpointSecret(WebhookEndpoint, kw_only=True):
    """The answer to a creation and to a rotation: the endpoint and its signing secret `whsec_…`.

    A replay of the creation (the same admin key, Idempotency-Key and body) shows the secret again
    while it is still the one the creation made; once rotated, `secret` is null there (the rotation's
    answer carried the new one)."""

    secret: str | None


# --- deliveries -----------------------------------------------------------------------------------


class WebhookDelivery(Out, kw_only=True):
    """One event for one endpoint. `webhookId` is its `webhook-id` header, the same on every attempt
    and replay: what a receiver dedupes on."""

    id: int
    webhook_id: str
    endpoint_id: str
    merchant_id: str
    event_type: str
    intent_id: str | None = None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    """When the next attempt is due (PENDING only)."""
    replay_by: str | None = None
    """Who last asked for it again; the sender's next attempt is a `replay`."""
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    updated_at: datetime


class WebhookAttempt(Out, kw_only=True):
    attempt: int
    trigger: Literal["initial", "retry", "replay"]
    at: datetime
    status_code: int | None = None
    error: str | None = None
    """Why there was no answer: a refused address, a timeout, a connection error."""
    latency_ms: int
    response_excerpt: str | None = None
    actor: str | None = None
    """Who asked for it (a replay)."""


class WebhookDeliveryDetail(WebhookDelivery, kw_only=True):
    """`GET /v1/admin/webhook-deliveries/{id}`: the delivery, the exact body it sends, its attempts."""

    payload: str
    """The body signed and sent on every attempt (UTF-8 JSON `{"type", "timestamp", "data"}`)."""
    attempt_log: list[WebhookAttempt] = []


class WebhookDeliveryPageLinks(Out, kw_only=True):
    next: str | None = None
    """The next (older) page with the same filters; null on the last page."""


class WebhookDeliveryPage(Out, kw_only=True):
    """Newest first. `nextCursor` is what to pass as `before` for the next page (the smallest id
    shown); `links.next` is that page's path and query, ready to sign and send."""

    items: list[WebhookDelivery]
    next_cursor: str | None = None
    links: WebhookDeliveryPageLinks = msgspec.field(default_factory=WebhookDeliveryPageLinks)
