"""`/v1/me/...`: end users, through nginx and the Auth Center (docs/api.md, "End users").

These requests carry no service key: nginx asks the Auth Center about the user's token
(`auth_request`), overwrites `X-PM-User` with the user id it answers, and adds the proxy secret. So PM
trusts `X-PM-User` only beside the proxy secret (`PM_GATEWAY_PROXY_SECRET`), compared in constant
time before anything else; with no proxy secret configured, every `/v1/me` request is refused.

The user's own wallet (`/v1/me/wallets`) and history (`/v1/me/history`), read as the signed routes
read them. Payments from the user's own wallet (`POST /v1/me/intents`: P2P and PromptPay
withdrawals), made as `POST /v1/intents` makes them, under the front door's key
(`FRONT_DOOR_KEY_ID`, which never signs) with the Idempotency-Key kept per user (`me:<user>:<key>`);
the user reads them back at `/v1/me/intents/{id}` (theirs only: payer or payee).

The user's answer to a payment request: `confirm` makes the MINIAPP_CHARGE intent exactly once (see
`pm_gateway.payment_requests`), submitted as if the merchant had (its key, its Idempotency-Key
`payment-request:<id>`), after the checks a charge gets (`merchant_access`) are run again, since the
merchant or its mini-app may have changed since it asked. `decline` closes the request.
"""

from __future__ import annotations

import hmac
import json
import uuid
from typing import get_args

import asyncpg
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import CreateMyIntent, MyIntentType
from pm_gateway import intents, merchant_access, payment_requests, shapes, wallets, web
from pm_gateway import queries as q
from pm_gateway.auth import Caller, refuse
from pm_gateway.ids import uuid7
from pm_gateway.problems import ProblemError
from pm_shared.keys.store import Permissions
from pm_shared.merchants import miniapps

FRONT_DOOR_KEY_ID = "pk_" + "0" * 24
"""The key end users' intents are kept under (migration 0015): inactive for ever, it never signs."""
FRONT_DOOR = Caller(FRONT_DOOR_KEY_ID, Permissions(operations=frozenset(get_args(MyIntentType)), owners=None))
LINKS = "/v1/me/intents"
PROXY_SECRET_HEADER = "X-PM-Proxy-Secret"
USER_HEADER = "X-PM-User"
LIST_LIMIT = 50


def guard(request: Request) -> None:
    """The proxy secret, before the body is read: only nginx may speak for a user."""
    expected = web.deps(request).settings.proxy_secret
    given = request.headers.get(PROXY_SECRET_HEADER, "")
    if not expected or not hmac.compare_digest(given.encode("latin-1"), expected.encode()):
        raise refuse(401, "proxy_secret_invalid", "/v1/me is reached through the front door only")


def _user(request: Request) -> str:
    user: str = web.inputs(request).params[USER_HEADER.lower()]
    return user


def _not_found() -> ProblemError:
    return ProblemError(404, "payment_request_not_found", "no such payment request")


async def wallets_(request: Request) -> Response:
    return web.json(await wallets.wallet_of(request, _user(request)))


async def history(request: Request) -> Response:
    return web.json(await wallets.history_of(request, _user(request)))


async def create_intent(request: Request) -> Response:
    given = web.inputs(request)
    user = _user(request)
    mine: CreateMyIntent = given.body
    intent_request = mine.intent(user)
    shapes.check(intent_request)
    key = f"me:{user}:{given.params[intents.IDEMPOTENCY_HEADER]}"
    return await intents.submit(request, FRONT_DOOR, key, intent_request, links=LINKS)


async def show_intent(request: Request) -> Response:
    d = web.deps(request)
    intent_id: uuid.UUID = web.inputs(request).params["intent_id"]
    user = {"kind": "user", "id": _user(request)}
    async with d.pool.acquire() as conn:
        mine = await conn.fetchval(q.IS_USERS_INTENT, intent_id, json.dumps(user))
    # Someone else's intent is as missing as one that does not exist: ids do not leak across users.
    if not mine:
        raise ProblemError(404, "intent_not_found", "no such intent")
    wait = intents.wait_seconds(request, d.settings.max_wait_s)
    answer = intents.linked(await intents.read(request, intent_id, wait), LINKS)
    return web.json(answer, 200, {"Preference-Applied": f"wait={wait}"} if wait else None)


async def list_requests(request: Request) -> Response:
    d = web.deps(request)
    async with d.pool.acquire() as conn:
        rows = await conn.fetch(q.LIST_USER_PAYMENT_REQUESTS, _user(request), LIST_LIMIT)
    return web.json([payment_requests.view(r) for r in rows])


async def decline(request: Request) -> Response:
    d = web.deps(request)
    request_id: uuid.UUID = web.inputs(request).params["request_id"]
    async with d.pool.acquire() as conn:
        row = await conn.fetchrow(q.DECLINE_PAYMENT_REQUEST, request_id, _user(request))
        if row is None:
            row = await conn.fetchrow(q.SELECT_PAYMENT_REQUEST, request_id)
            if row is None or row["user_id"] != _user(request):
                raise _not_found()
    answer = payment_requests.view(row)
    if answer.status != "DECLINED":
        raise ProblemError(
            409, f"payment_request_{answer.status.lower()}", f"the payment request is {answer.status}"
        )
    return web.json(answer)


def _merchant_caller(row: asyncpg.Record, *, active: bool) -> Caller:
    """The merchant's key as the charge's submitter; `active`: refuse it (403) once deactivated."""
    key = None if row["merchant_key"] is None else json.loads(row["merchant_key"])
    if key is None or (active and key["status"] != "active"):
        raise refuse(403, "merchant_inactive", "the merchant no longer takes payments")
    return Caller(row["key_id"], Permissions.from_json(key["permissions"]))


async def confirm(request: Request) -> Response:
    d = web.deps(request)
    request_id: uuid.UUID = web.inputs(request).params["request_id"]
    user = _user(request)
    # One connection, two statements before the intent's insert: the request with its merchant's key
    # and mini-app, then (for a first confirmation) the update that takes the answer.
    async with d.pool.acquire() as conn:
        row = await conn.fetchrow(q.SELECT_CONFIRMATION, request_id)
        if row is None or row["user_id"] != user:
            raise _not_found()
        shown: str = row["shown"]
        if shown in ("DECLINED", "EXPIRED"):
            raise ProblemError(409, f"payment_request_{shown.lower()}", f"the payment request is {shown}")
        intent_id = row["intent_id"]
        # A request confirmed already names its intent: a repeat finds (or finishes) that one, even if
        # the merchant was deactivated since; a new confirmation needs an active merchant.
        caller = _merchant_caller(row, active=intent_id is None)
        body = payment_requests.charge_of(row)
        if intent_id is None:
            app = None if row["miniapp"] is None else miniapps.from_json(row["miniapp"])
            merchant_access.allowed(caller, body, app)
            # The intent's id is minted here, once: whichever confirmation wins names it.
            confirmed = await conn.fetchrow(q.CONFIRM_PAYMENT_REQUEST, request_id, user, uuid7())
            if confirmed is not None:
                intent_id = confirmed["intent_id"]
    if intent_id is None:  # expired or answered meanwhile: say what it is now
        return await confirm(request)
    key = payment_requests.intent_key(request_id)
    return await intents.submit(request, caller, key, body, intent_id=intent_id, links=LINKS)
