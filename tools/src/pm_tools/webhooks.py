"""What `pm webhooks` does (docs/webhooks-api.md): a merchant's webhook endpoints and the delivery log,
through the same store as the gateway's admin routes (`pm_shared.webhooks`), straight on PostgreSQL
like the other operator tools. Every change is recorded with the actor `pm webhooks (<user>)`; the
printing is `pm_tools.cli.webhooks_cmd`'s.

The URL policy is the gateway's, from the same variables (the environment, then `.pm/env`):
`PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS` and `PM_GATEWAY_WEBHOOK_ALLOW_HTTP`. `add` is idempotent like
`POST …/webhook-endpoints`: its Idempotency-Key defaults to one made of the merchant, URL and event
types, so the same command again answers the same endpoint (and its secret, while not rotated).
"""

from __future__ import annotations

import getpass
import hashlib
import re
from collections.abc import Mapping, Sequence

import msgspec

from pm_client.webhook_api import ENDPOINT_ID_PATTERN
from pm_shared.keys.crypto import Cipher
from pm_shared.webhooks import deliveries, endpoints, urls
from pm_tools.database import connection

APPLICATION = "pm webhooks"
NETWORKS_VARIABLE = "PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS"
HTTP_VARIABLE = "PM_GATEWAY_WEBHOOK_ALLOW_HTTP"
_ENDPOINT_ID = re.compile(ENDPOINT_ID_PATTERN)


def actor() -> str:
    return f"{APPLICATION} ({getpass.getuser()})"


def url_policy(environ: Mapping[str, str]) -> urls.UrlPolicy:
    """The gateway's URL policy from its variables; ValueError naming the variable that is wrong."""
    try:
        allowed = urls.networks(environ.get(NETWORKS_VARIABLE, ""))
    except ValueError as exc:
        raise ValueError(f"{NETWORKS_VARIABLE}: {exc}") from None
    try:
        allow_http = msgspec.convert(environ.get(HTTP_VARIABLE) or "false", bool, strict=False)
    except msgspec.ValidationError:
        raise ValueError(f"{HTTP_VARIABLE} is true or false") from None
    return urls.UrlPolicy(allowed, allow_http)


def default_idempotency_key(merchant_id: str, url: str, event_types: Sequence[str]) -> str:
    """`cli:` and a digest of what is asked: the same command, the same key."""
    asked = "\0".join([merchant_id, url, *sorted(set(event_types))])
    return "cli:" + hashlib.sha256(asked.encode()).hexdigest()[:32]


def endpoint_id(value: str) -> str:
    """`value` if it has an endpoint id's form; else EndpointNotFoundError (it names none)."""
    if not _ENDPOINT_ID.search(value):
        raise endpoints.EndpointNotFoundError(value)
    return value


async def of_merchant(url: str, merchant_id: str) -> list[endpoints.Endpoint]:
    async with connection(url, APPLICATION) as conn:
        return await endpoints.of_merchant(conn, merchant_id)


async def add(
    url: str, cipher: Cipher, wanted: endpoints.Creation
) -> tuple[endpoints.Endpoint, str | None, bool]:
    async with connection(url, APPLICATION) as conn:
        return await endpoints.create(conn, cipher, wanted)


async def show_endpoint(url: str, endpoint: str) -> tuple[endpoints.Endpoint, list[endpoints.LogEntry]]:
    async with connection(url, APPLICATION) as conn:
        found = await endpoints.get(conn, endpoint_id(endpoint))
        return found, await endpoints.history(conn, found.endpoint_id)


async def rotate(url: str, cipher: Cipher, endpoint: str, grace_s: int) -> tuple[endpoints.Endpoint, str]:
    async with connection(url, APPLICATION) as conn:
        return await endpoints.rotate(conn, cipher, endpoint_id(endpoint), actor(), grace_s=grace_s)


async def disable(url: str, endpoint: str, reason: str | None) -> endpoints.Endpoint:
    async with connection(url, APPLICATION) as conn:
        return await endpoints.disable(conn, endpoint_id(endpoint), actor(), reason)


async def enable(url: str, endpoint: str) -> endpoints.Endpoint:
    async with connection(url, APPLICATION) as conn:
        return await endpoints.enable(conn, endpoint_id(endpoint), actor())


async def page(
    url: str, *, merchant_id: str | None, endpoint: str | None, status: str | None, limit: int
) -> list[deliveries.Delivery]:
    async with connection(url, APPLICATION) as conn:
        return await deliveries.page(
            conn, merchant_id=merchant_id, endpoint_id=endpoint, status=status, limit=limit
        )


async def show(url: str, delivery_id: int) -> deliveries.Detail:
    async with connection(url, APPLICATION) as conn:
        return await deliveries.get(conn, delivery_id)


async def replay(url: str, delivery_id: int) -> deliveries.Delivery:
    async with connection(url, APPLICATION) as conn:
        return await deliveries.replay(conn, delivery_id, actor())
