"""Admin routes (admin keys only): service keys. Fee rules, limit rules and routes come with the
orchestrator, which owns those tables."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import CreateKey, RotateKey
from pm_gateway import web
from pm_gateway.auth import require_admin
from pm_gateway.problems import ProblemError
from pm_shared.keys import views
from pm_shared.keys.store import (
    KeyNotFoundError,
    Permissions,
    create_key,
    deactivate_key,
    list_keys,
    rotate_key,
)


async def keys(request: Request) -> Response:
    d = web.deps(request)
    require_admin(await web.caller(request))
    async with d.pool.acquire() as conn:
        found = await list_keys(conn)
    return web.json([views.info(k) for k in found])


async def create(request: Request) -> Response:
    d = web.deps(request)
    wanted: CreateKey = web.inputs(request).body
    require_admin(await web.caller(request))
    permissions = Permissions(
        operations=frozenset(wanted.operations),
        owners=frozenset(wanted.owners) if wanted.owners is not None else None,
        admin=wanted.admin,
    )
    async with d.pool.acquire() as conn:
        key, secret = await create_key(
            conn, d.auth.cipher, permissions=permissions, description=wanted.description
        )
    return web.json(views.with_secret(key, secret), 201)


async def rotate(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: RotateKey = given.body
    key_id: str = given.params["key_id"]
    require_admin(await web.caller(request))
    try:
        async with d.pool.acquire() as conn:
            key, secret = await rotate_key(conn, d.auth.cipher, key_id, grace_s=wanted.grace_seconds)
    except KeyNotFoundError:
        raise ProblemError(404, "key_not_found", "no such service key") from None
    d.auth.forget(key_id)
    return web.json(views.with_secret(key, secret))


async def deactivate(request: Request) -> Response:
    d = web.deps(request)
    key_id: str = web.inputs(request).params["key_id"]
    require_admin(await web.caller(request))
    try:
        async with d.pool.acquire() as conn:
            key = await deactivate_key(conn, key_id)
    except KeyNotFoundError:
        raise ProblemError(404, "key_not_found", "no such service key") from None
    d.auth.forget(key_id)
    return web.json(views.info(key))
