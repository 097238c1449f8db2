"""The routes of merchants' outbound webhooks (admin keys only): endpoints, their secrets, the delivery
log and replays, declared as `pm_gateway.routes` declares the others. The handlers are in
`pm_gateway.webhook_endpoints` and `pm_gateway.webhook_deliveries`.

An endpoint id that is not `ep_` and 24 hex digits names no endpoint (404), a delivery id that is not
a positive bigint no delivery (404), as an intent id that is not a UUID names no intent. The list's
query parameters that do not fit are 400 with a code of their own, as on the other list routes.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from pm_client.api import Id
from pm_client.webhook_api import (
    CreateWebhookEndpoint,
    DeliveryStatus,
    DisableWebhookEndpoint,
    EndpointId,
    RotateWebhookSecret,
    WebhookDelivery,
    WebhookDeliveryDetail,
    WebhookDeliveryPage,
    WebhookEndpoint,
    WebhookEndpointDetail,
    WebhookEndpointSecret,
)
from pm_gateway import webhook_deliveries, webhook_endpoints
from pm_gateway.cursors import BIGINT_MAX
from pm_gateway.endpoints import Endpoint, Param
from pm_gateway.params import ID_RULE, IDEMPOTENCY, MERCHANT

TAG = "merchant webhooks"
LIMIT_MAX = 200
ADMIN = ("forbidden_admin",)
URL_RULES = ("webhook_url_invalid", "webhook_url_https_required", "webhook_url_not_allowed")
NO_ENDPOINT = ("webhook_endpoint_not_found",)
RowId = Annotated[int, msgspec.Meta(ge=1, le=BIGINT_MAX)]

ENDPOINT = Param(
    "endpoint_id",
    "path",
    "The endpoint id (`ep_` and 24 hex digits); anything else names no endpoint (404).",
    EndpointId,
    required=True,
    status=404,
    code="webhook_endpoint_not_found",
)
DELIVERY = Param(
    "delivery_id",
    "path",
    "The delivery id (a positive integer); anything else names no delivery (404).",
    RowId,
    required=True,
    status=404,
    code="webhook_delivery_not_found",
)
DELIVERY_FILTERS = (
    Param("merchant", "query", f"Only this merchant's deliveries. {ID_RULE}", Id, code="merchant_invalid"),
    Param(
        "endpoint",
        "query",
        "Only this endpoint's deliveries (`ep_` and 24 hex digits).",
        EndpointId,
        code="webhook_endpoint_invalid",
    ),
    Param(
        "status",
        "query",
        "Only deliveries in this status: PENDING, DELIVERED or FAILED.",
        DeliveryStatus,
        code="delivery_status_invalid",
    ),
    Param(
        "before",
        "query",
        f"Only deliveries with a smaller id: the previous page's `nextCursor` (digits, 1–{BIGINT_MAX}).",
        RowId,
        code="before_invalid",
    ),
    Param(
        "limit",
        "query",
        f"How many, 1–{LIMIT_MAX} (default 50), ASCII digits.",
        Annotated[int, msgspec.Meta(ge=1, le=LIMIT_MAX)],
        code="limit_invalid",
        default=50,
    ),
)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/v1/admin/merchants/{merchant_id}/webhook-endpoints",
        webhook_endpoints.create,
        "Add a webhook endpoint to a merchant, with a new `whsec_` signing secret, idempotently (201; "
        "a replay 201 with `Idempotent-Replayed: true`, its secret while not rotated since).",
        CreateWebhookEndpoint,
        {201: WebhookEndpointSecret},
        {
            403: ADMIN,
            404: ("merchant_not_found",),
            409: ("idempotency_key_reused",),
            422: URL_RULES,
        },
        (MERCHANT, IDEMPOTENCY),
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/merchants/{merchant_id}/webhook-endpoints",
        webhook_endpoints.list_,
        "A merchant's webhook endpoints, oldest first (never their secrets).",
        None,
        {200: list[WebhookEndpoint]},
        {403: ADMIN, 404: ("merchant_not_found",)},
        (MERCHANT,),
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/webhook-endpoints/{endpoint_id}",
        webhook_endpoints.show,
        "One webhook endpoint and its changes (created, rotated, disabled, enabled: who and when).",
        None,
        {200: WebhookEndpointDetail},
        {403: ADMIN, 404: NO_ENDPOINT},
        (ENDPOINT,),
        tag=TAG,
    ),
    Endpoint(
        "POST",
        "/v1/admin/webhook-endpoints/{endpoint_id}/rotate-secret",
        webhook_endpoints.rotate_secret,
        "A new signing secret, shown this once; the previous one signs too for `graceSeconds` (default "
        "a day). The body may be empty.",
        RotateWebhookSecret,
        {200: WebhookEndpointSecret},
        {403: ADMIN, 404: NO_ENDPOINT},
        (ENDPOINT,),
        tag=TAG,
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/admin/webhook-endpoints/{endpoint_id}/disable",
        webhook_endpoints.disable,
        "Stop delivering to an endpoint, with an optional reason (a repeat changes nothing). The body "
        "may be empty.",
        DisableWebhookEndpoint,
        {200: WebhookEndpoint},
        {403: ADMIN, 404: NO_ENDPOINT},
        (ENDPOINT,),
        tag=TAG,
        body_optional=True,
    ),
    Endpoint(
        "POST",
        "/v1/admin/webhook-endpoints/{endpoint_id}/enable",
        webhook_endpoints.enable,
        "Deliver to a disabled endpoint again (its failed deliveries stay failed until replayed). No body.",
        None,
        {200: WebhookEndpoint},
        {403: ADMIN, 404: NO_ENDPOINT},
        (ENDPOINT,),
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/webhook-deliveries",
        webhook_deliveries.list_,
        "Webhook deliveries, newest first, a page at a time: by merchant, endpoint, status.",
        None,
        {200: WebhookDeliveryPage},
        {403: ADMIN},
        DELIVERY_FILTERS,
        tag=TAG,
    ),
    Endpoint(
        "GET",
        "/v1/admin/webhook-deliveries/{delivery_id}",
        webhook_deliveries.show,
        "One webhook delivery: the body it sends and every attempt (when, why, what came back).",
        None,
        {200: WebhookDeliveryDetail},
        {403: ADMIN, 404: ("webhook_delivery_not_found",)},
        (DELIVERY,),
        tag=TAG,
    ),
    Endpoint(
        "POST",
        "/v1/admin/webhook-deliveries/{delivery_id}/replay",
        webhook_deliveries.replay,
        "Deliver it again (202): whatever its status, it is due now and the sender's next attempt is a "
        "replay, with the same `webhook-id` and body. No body.",
        None,
        {202: WebhookDelivery},
        {
            403: ADMIN,
            404: ("webhook_delivery_not_found",),
            409: ("webhook_endpoint_disabled", "webhook_delivery_in_flight"),
        },
        (DELIVERY,),
        tag=TAG,
    ),
)
