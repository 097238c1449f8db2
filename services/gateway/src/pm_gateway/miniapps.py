"""Admin routes for the mini-app catalog (docs/api.md, "Mini-apps"): create (idempotent on the id),
list (all, or one merchant's), deactivate (its intents are refused from then on)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from pm_client.merchant_api import CreateMiniapp, Miniapp
from pm_gateway import web
from pm_gateway.auth import require_admin
from pm_gateway.problems import ProblemError
from pm_shared.merchants import miniapps


def view(found: miniapps.Miniapp) -> Miniapp:
    return Miniapp(
        miniapp_id=found.miniapp_id,
        merchant_id=found.merchant_id,
        name=found.name,
        status="ACTIVE" if found.active else "INACTIVE",
        operations=sorted(found.operations),
        max_charge=dict(found.max_charge),
        created_at=found.created_at,
        deactivated_at=found.deactivated_at,
    )


async def create(request: Request) -> Response:
    d = web.deps(request)
    wanted: CreateMiniapp = web.inputs(request).body
    caller = await web.caller(request)
    require_admin(caller)
    try:
        async with d.pool.acquire() as conn:
            found, created = await miniapps.create(
                conn,
                miniapp_id=wanted.miniapp_id,
                merchant_id=wanted.merchant_id,
                name=wanted.name,
                operations=frozenset(wanted.operations),
                max_charge={str(k): v for k, v in wanted.max_charge.items()},
                actor=caller.key_id,
            )
    except miniapps.MerchantNotFoundError:
        raise ProblemError(422, "merchant_not_found", f"no merchant {wanted.merchant_id}") from None
    except miniapps.MiniappConflictError:
        raise ProblemError(
            409, "miniapp_exists", f"mini-app {wanted.miniapp_id} is defined otherwise"
        ) from None
    return web.json(view(found), 201 if created else 200)


async def list_(request: Request) -> Response:
    d = web.deps(request)
    merchant_id: str | None = web.inputs(request).params["merchant"]
    require_admin(await web.caller(request))
    async with d.pool.acquire() as conn:
        found = await miniapps.list_all(conn, merchant_id)
    return web.json([view(m) for m in found])


async def deactivate(request: Request) -> Response:
    d = web.deps(request)
    miniapp_id: str = web.inputs(request).params["miniapp_id"]
    require_admin(await web.caller(request))
    try:
        async with d.pool.acquire() as conn:
            found = await miniapps.deactivate(conn, miniapp_id)
    except miniapps.MiniappNotFoundError:
        raise ProblemError(404, "miniapp_not_found", f"no mini-app {miniapp_id}") from None
    return web.json(view(found))
