"""Admin routes for merchants (docs/api.md, "Merchants"): onboard, list, show, deactivate,
close the accounts (`pm_shared.merchants.closing`), reactivate (reopening them), rotate the secret.
Admin keys only; every change is recorded with the admin key's id.

Onboarding is one idempotent operation, keyed by the admin key and its `Idempotency-Key`: the
service key and the `pm.merchant` row are written in one transaction (`pm_shared.merchants.store`),
then the merchant's ledger accounts are opened through the ledger-writer (`pm_gateway.opening`). A
crash between the two, or an account not opened yet (202), is finished by a repeat of the request:
the same merchant, key and accounts, never a second of any. The answer, and each replay's, carries
the key's secret; no other answer does.
"""

from __future__ import annotations

import hashlib

import msgspec
import tigerbeetle as tb
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import RotateKey, ServiceKeySecret
from pm_client.merchant_api import CreateMerchant, Merchant, MerchantAccount, MerchantEvent, OnboardedMerchant
from pm_gateway import opening, web
from pm_gateway.auth import Caller, require_admin
from pm_gateway.problems import ProblemError
from pm_shared.keys import store as keys
from pm_shared.keys import views as key_views
from pm_shared.ledger import accounts, chart
from pm_shared.merchants import closing, store
from pm_shared.merchants.store import MerchantConflictError, MerchantNotFoundError
from pm_shared.streams import BackPressureError

IDEMPOTENCY_HEADER = "idempotency-key"
_canonical = msgspec.json.Encoder(order="deterministic")


def _view(
    merchant: store.Merchant,
    opened: dict[chart.AccountSpec, tb.Account],
    events: list[store.Event] | None = None,
) -> Merchant:
    return Merchant(
        merchant_id=merchant.merchant_id,
        name=merchant.name,
        status="ACTIVE" if merchant.active else "INACTIVE",
        key_id=merchant.key_id,
        currencies=list(merchant.currencies),
        accounts=[
            MerchantAccount(
                currency=spec.currency,
                account_id=f"{accounts.spec_account(spec).id:032x}",
                opened=spec in opened,
            )
            for spec in store.account_specs(merchant)
        ],
        created_at=merchant.created_at,
        deactivated_at=merchant.deactivated_at,
        accounts_state=merchant.accounts_state,  # type: ignore[arg-type]  # the table's CHECK
        events=[MerchantEvent(at=e.at, action=e.action, actor=e.actor) for e in events or ()],
    )


async def _admin(request: Request) -> Caller:
    caller = await web.caller(request)
    require_admin(caller)
    return caller


def _not_found(merchant_id: str) -> ProblemError:
    return ProblemError(404, "merchant_not_found", f"no merchant {merchant_id}")


async def onboard(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: CreateMerchant = given.body
    caller = await _admin(request)
    onboarding = store.Onboarding(
        merchant_id=wanted.merchant_id,
        name=wanted.name,
        currencies=tuple(wanted.currencies),
        created_by=caller.key_id,
        idempotency_key=given.params[IDEMPOTENCY_HEADER],
        request_hash=hashlib.sha256(_canonical.encode(wanted)).digest(),
    )
    try:
        async with d.pool.acquire() as conn:
            merchant, created = await store.onboard(conn, d.auth.cipher, onboarding)
            secret = await keys.current_secret(conn, d.auth.cipher, merchant.key_id)
    except MerchantConflictError as exc:
        if exc.reason == "idempotency_key_reused":
            raise ProblemError(
                409, "idempotency_key_reused", "this Idempotency-Key was used with another body"
            ) from None
        raise ProblemError(
            409, "merchant_exists", f"merchant {wanted.merchant_id} exists (onboarded with another key)"
        ) from None
    assert secret is not None
    opened = await opening.open_accounts(d, store.account_specs(merchant))
    answer = OnboardedMerchant(**msgspec.structs.asdict(_view(merchant, opened)), secret=secret)
    headers = {"Location": f"/v1/admin/merchants/{merchant.merchant_id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    if len(opened) < len(merchant.currencies):
        # The row and key are committed; the accounts are on their way: repeat the request to finish.
        return web.json(answer, 202, {**headers, "Retry-After": "1"})
    return web.json(answer, 201, headers)


async def _show(request: Request, merchant: store.Merchant) -> Merchant:
    d = web.deps(request)
    opened = await opening.existing(d, store.account_specs(merchant))
    async with d.pool.acquire() as conn:
        events = await store.events(conn, merchant.merchant_id)
    return _view(merchant, opened, events)


async def list_(request: Request) -> Response:
    d = web.deps(request)
    await _admin(request)
    async with d.pool.acquire() as conn:
        found = await store.list_all(conn)
    return web.json([_view(m, {}) for m in found])


async def show(request: Request) -> Response:
    d = web.deps(request)
    merchant_id: str = web.inputs(request).params["merchant_id"]
    await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            merchant = await store.get(conn, merchant_id)
    except MerchantNotFoundError:
        raise _not_found(merchant_id) from None
    return web.json(await _show(request, merchant))


async def _set_status(request: Request, status: str, caller: Caller | None = None) -> Response:
    """`caller`: the admin, when the handler authenticated the request already (a nonce counts once)."""
    d = web.deps(request)
    merchant_id: str = web.inputs(request).params["merchant_id"]
    caller = caller or await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            merchant = await store.set_status(conn, merchant_id, status, caller.key_id)
    except MerchantNotFoundError:
        raise _not_found(merchant_id) from None
    # This gateway stops (or resumes) accepting the key at once; the others within PM_GATEWAY_KEY_CACHE_S.
    d.auth.forget(merchant.key_id)
    return web.json(await _show(request, merchant))


async def deactivate(request: Request) -> Response:
    return await _set_status(request, store.INACTIVE)


def _closer(request: Request, caller: Caller) -> closing.Closer:
    d = web.deps(request)
    return closing.Closer(d.ledger, d.publisher, d.pool, caller.key_id, d.settings.wallet_open_wait_s)


async def reactivate(request: Request) -> Response:
    """Reopen its accounts if they were closed (202 while the ledger-writer works: repeat), then
    let its key sign again."""
    merchant_id: str = web.inputs(request).params["merchant_id"]
    caller = await _admin(request)
    try:
        merchant, reopened = await _closer(request, caller).reopen(merchant_id)
    except MerchantNotFoundError:
        raise _not_found(merchant_id) from None
    except BackPressureError as exc:
        raise _busy(exc) from None
    if not reopened:
        return web.json(await _show(request, merchant), 202, {"Retry-After": "1"})
    return await _set_status(request, store.ACTIVE, caller)


async def close_accounts(request: Request) -> Response:
    merchant_id: str = web.inputs(request).params["merchant_id"]
    caller = await _admin(request)
    try:
        merchant, closed = await _closer(request, caller).close(merchant_id)
    except MerchantNotFoundError:
        raise _not_found(merchant_id) from None
    except closing.MerchantActiveError:
        raise ProblemError(
            409, "merchant_active", "deactivate the merchant before closing its accounts"
        ) from None
    except closing.MerchantBusyError as exc:
        raise ProblemError(
            409,
            "merchant_busy",
            f"{exc.in_flight} intents still move this merchant's money; close once they finish",
            headers={"Retry-After": "1"},
        ) from None
    except closing.ReopeningError:
        raise ProblemError(
            409, "merchant_reopening", "its accounts are being reopened: finish the reactivation first"
        ) from None
    except closing.SuspenseMissingError:
        raise ProblemError(
            503,
            "ledger_not_ready",
            "the ledger has no suspense account for one of its currencies yet (the ledger-writer "
            "opens it when it starts)",
            headers={"Retry-After": "5"},
        ) from None
    except BackPressureError as exc:
        raise _busy(exc) from None
    if not closed:
        return web.json(await _show(request, merchant), 202, {"Retry-After": "1"})
    return web.json(await _show(request, merchant))


def _busy(exc: BackPressureError) -> ProblemError:
    retry = str(max(1, round(exc.retry_after_s)))
    return ProblemError(
        503, "backpressure", "the ledger is busy; retry later", headers={"Retry-After": retry}
    )


async def rotate_secret(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: RotateKey = given.body
    merchant_id: str = given.params["merchant_id"]
    caller = await _admin(request)
    try:
        async with d.pool.acquire() as conn:
            _, key, secret = await store.rotate_secret(
                conn, d.auth.cipher, merchant_id, caller.key_id, grace_s=wanted.grace_seconds
            )
    except MerchantNotFoundError:
        raise _not_found(merchant_id) from None
    d.auth.forget(key.key_id)
    answer: ServiceKeySecret = key_views.with_secret(key, secret)
    return web.json(answer)
