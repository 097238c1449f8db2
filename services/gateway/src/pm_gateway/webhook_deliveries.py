"""Admin routes of the webhook delivery log (docs/webhooks-api.md), over
`pm_shared.webhooks.deliveries`: a page of deliveries (by merchant, endpoint, status), one with its
attempts, and a replay. Admin keys only; a replay's actor is the admin key's id.

A delivery id that is not a positive bigint names none (404 `webhook_delivery_not_found`, checked
with the path); a replay for a disabled endpoint is 409 `webhook_endpoint_disabled`, one while a
sender is attempting the delivery 409 `webhook_delivery_in_flight` with Retry-After; neither changes
anything.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from pm_client.webhook_api import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryDetail,
    WebhookDeliveryPage,
    WebhookDeliveryPageLinks,
)
from pm_gateway import web
from pm_gateway.auth import require_admin
from pm_gateway.problems import ProblemError
from pm_shared.webhooks import deliveries

DELIVERIES_PATH = "/v1/admin/webhook-deliveries"
_FIELDS = WebhookDelivery.__struct_fields__


def view(delivery: deliveries.Delivery) -> WebhookDelivery:
    """The store's delivery as the API shows it (the same fields, by name)."""
    return WebhookDelivery(**{name: getattr(delivery, name) for name in _FIELDS})


def _next_link(params: dict[str, Any], before: int) -> str:
    query = {
        "merchant": params["merchant"],
        "endpoint": params["endpoint"],
        "status": params["status"],
        "limit": params["limit"],
        "before": before,
    }
    return f"{DELIVERIES_PATH}?{urlencode({k: v for k, v in query.items() if v is not None})}"


def _not_found(delivery_id: int) -> ProblemError:
    return ProblemError(404, "webhook_delivery_not_found", f"no webhook delivery {delivery_id}")


async def list_(request: Request) -> Response:
    """A page, newest first; one more than asked is read to know whether a next page exists."""
    d = web.deps(request)
    params = web.inputs(request).params
    require_admin(await web.caller(request))
    limit: int = params["limit"]
    async with d.pool.acquire() as conn:
        found = await deliveries.page(
            conn,
            merchant_id=params["merchant"],
            endpoint_id=params["endpoint"],
            status=params["status"],
            before=params["before"],
            limit=limit + 1,
        )
    items = [view(x) for x in found[:limit]]
    if len(found) <= limit:
        return web.json(WebhookDeliveryPage(items=items))
    last = items[-1].id
    links = WebhookDeliveryPageLinks(next=_next_link(params, last))
    return web.json(WebhookDeliveryPage(items=items, next_cursor=str(last), links=links))


async def show(request: Request) -> Response:
    d = web.deps(request)
    delivery_id: int = web.inputs(request).params["delivery_id"]
    require_admin(await web.caller(request))
    try:
        async with d.pool.acquire() as conn:
            found = await deliveries.get(conn, delivery_id)
    except deliveries.DeliveryNotFoundError:
        raise _not_found(delivery_id) from None
    shown = {name: getattr(found.delivery, name) for name in _FIELDS}
    attempts = [
        WebhookAttempt(
            attempt=a.attempt,
            trigger=a.trigger,  # type: ignore[arg-type]  # the table's CHECK
            at=a.at,
            status_code=a.status_code,
            error=a.error,
            latency_ms=a.latency_ms,
            response_excerpt=a.response_excerpt,
            actor=a.actor,
        )
        for a in found.attempts
    ]
    payload = found.payload.decode("utf-8", errors="replace")
    return web.json(WebhookDeliveryDetail(**shown, payload=payload, attempt_log=attempts))


async def replay(request: Request) -> Response:
    """202: due now, the sender's next attempt a replay (`Location`: the delivery, to follow it)."""
    d = web.deps(request)
    delivery_id: int = web.inputs(request).params["delivery_id"]
    caller = await web.caller(request)
    require_admin(caller)
    try:
        async with d.pool.acquire() as conn:
            replayed = await deliveries.replay(conn, delivery_id, caller.key_id)
    except deliveries.DeliveryNotFoundError:
        raise _not_found(delivery_id) from None
    except deliveries.EndpointDisabledError as exc:
        raise ProblemError(409, "webhook_endpoint_disabled", str(exc)) from None
    except deliveries.DeliveryInFlightError as exc:
        raise ProblemError(
            409, "webhook_delivery_in_flight", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
        ) from None
    return web.json(view(replayed), 202, {"Location": f"{DELIVERIES_PATH}/{delivery_id}"})
