"""Admin routes of merchants' webhook endpoints (docs/webhooks-api.md), over
`pm_shared.webhooks.endpoints`: create (idempotent, with a new signing secret), list a merchant's,
show one with its changes, rotate its secret, disable, enable. Admin keys only; the actor of every
change is the admin key's id.

What the store refuses is a problem that changes nothing: an unknown merchant 404
`merchant_not_found`, an unknown endpoint 404 `webhook_endpoint_not_found`, an Idempotency-Key used
for another request 409 `idempotency_key_reused`, a URL the gateway's policy does not take 422
(`webhook_url_invalid`, `webhook_url_https_required`, `webhook_url_not_allowed`:
`pm_shared.webhooks.urls`).
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.webhook_api import (
    CreateWebhookEndpoint,
    DisableWebhookEndpoint,
    RotateWebhookSecret,
    WebhookEndpoint,
    WebhookEndpointDetail,
    WebhookEndpointEvent,
    WebhookEndpointSecret,
)
from pm_gateway import web
from pm_gateway.auth import Caller, require_admin
from pm_gateway.params import IDEMPOTENCY
from pm_gateway.problems import ProblemError
from pm_shared.webhooks import endpoints, urls
from pm_shared.webhooks.endpoints import EndpointNotFoundError, MerchantNotFoundError

ENDPOINTS_PATH = "/v1/admin/webhook-endpoints"


async def _admin(request: Request) -> Caller:
    caller = await web.caller(request)
    require_admin(caller)
    return caller


def view(endpoint: endpoints.Endpoint) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=endpoint.endpoint_id,
        merchant_id=endpoint.merchant_id,
        url=endpoint.url,
        event_types=list(endpoint.event_types),
        status=endpoint.status,  # type: ignore[arg-type]  # the table's CHECK
        disabled_reason=endpoint.disabled_reason,
        failing_since=endpoint.failing_since,
        previous_secret_until=endpoint.previous_secret_until,
        created_by=endpoint.created_by,
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def _with_secret(endpoint: endpoints.Endpoint, secret: str | None) -> WebhookEndpointSecret:
    return WebhookEndpointSecret(**msgspec.structs.asdict(view(endpoint)), secret=secret)


def _merchant_not_found(merchant_id: str) -> ProblemError:
    return ProblemError(404, "merchant_not_found", f"no merchant {merchant_id}")


def _not_found(endpoint_id: str) -> ProblemError:
    return ProblemError(404, "webhook_endpoint_not_found", f"no webhook endpoint {endpoint_id}")


async def create(request: Request) -> Response:
    """201 with the secret; a replay 201 with `Idempotent-Replayed: true` (the secret while unrotated)."""
    d = web.deps(request)
    given = web.inputs(request)
    wanted: CreateWebhookEndpoint = given.body
    merchant_id: str = given.params["merchant_id"]
    caller = await _admin(request)
    try:
        url = urls.check(wanted.url, d.settings.webhook_url_policy())
    except urls.UrlRefusedError as exc:
        raise ProblemError(422, exc.code, str(exc)) from None
    creation = endpoints.Creation(
        merchant_id=merchant_id,
        url=url,
        event_types=endpoints.event_types(wanted.event_types),
        actor=caller.key_id,
        idempotency_key=given.params[IDEMPOTENCY.key],
    )
    try:
        async with d.pool.acquire() as conn:
            endpoint, secret, created = await endpoints.create(conn, d.auth.cipher, creation)
    except MerchantNotFoundError:
        raise _merchant_not_found(merchant_id) from None
    except endpoints.IdempotencyConflictError:
        raise ProblemError(
            409, "idempotency_key_reused", "this Idempotency-Key was used with another request"
        ) from None
    headers = {"Location": f"{ENDPOINTS_PATH}/{endpoint.endpoint_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return web.json(_with_secret(endpoint, secret), 201, headers)


async def list_(request: Request) -> Response:
    d = web.deps(request)
    merchant_id: str = web.inputs(request).params["merchant_id"]
    await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            found = await endpoints.of_merchant(conn, merchant_id)
    except MerchantNotFoundError:
        raise _merchant_not_found(merchant_id) from None
    return web.json([view(e) for e in found])


async def show(request: Request) -> Response:
    d = web.deps(request)
    endpoint_id: str = web.inputs(request).params["endpoint_id"]
    await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            endpoint = await endpoints.get(conn, endpoint_id)
            changes = await endpoints.history(conn, endpoint_id)
    except EndpointNotFoundError:
        raise _not_found(endpoint_id) from None
    history = [
        WebhookEndpointEvent(action=e.action, actor=e.actor, detail=e.detail, at=e.at) for e in changes
    ]
    return web.json(WebhookEndpointDetail(**msgspec.structs.asdict(view(endpoint)), history=history))


async def rotate_secret(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: RotateWebhookSecret = given.body
    endpoint_id: str = given.params["endpoint_id"]
    caller = await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            endpoint, secret = await endpoints.rotate(
                conn, d.auth.cipher, endpoint_id, caller.key_id, grace_s=wanted.grace_seconds
            )
    except EndpointNotFoundError:
        raise _not_found(endpoint_id) from None
    return web.json(_with_secret(endpoint, secret))


async def disable(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: DisableWebhookEndpoint = given.body
    endpoint_id: str = given.params["endpoint_id"]
    caller = await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            endpoint = await endpoints.disable(conn, endpoint_id, caller.key_id, wanted.reason)
    except EndpointNotFoundError:
        raise _not_found(endpoint_id) from None
    return web.json(view(endpoint))


async def enable(request: Request) -> Response:
    d = web.deps(request)
    endpoint_id: str = web.inputs(request).params["endpoint_id"]
    caller = await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            endpoint = await endpoints.enable(conn, endpoint_id, caller.key_id)
    except EndpointNotFoundError:
        raise _not_found(endpoint_id) from None
    return web.json(view(endpoint))
