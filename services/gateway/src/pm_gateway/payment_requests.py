"""Payment requests (docs/api.md, "Payment requests"): the consent a MINIAPP_CHARGE needs.

A merchant's key asks (`POST /v1/payment-requests`, idempotent on its `Idempotency-Key`) through one of
its mini-apps, checked as a charge would be (`merchant_access`). The user answers through `/v1/me`
(`pm_gateway.me`): a confirmation makes the MINIAPP_CHARGE intent exactly once. Its id is minted when
the request turns CONFIRMED, in the same transaction, and the intent is submitted under the merchant's
key with the Idempotency-Key `payment-request:<id>`: a confirmation repeated after a crash anywhere
submits that same intent, and finds it if it is there.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import CreateIntent, MerchantParty, UserParty
from pm_client.merchant_api import CreatePaymentRequest, PaymentRequest
from pm_gateway import merchant_access, web
from pm_gateway import queries as q
from pm_gateway.auth import Caller, refuse, require_operation
from pm_gateway.problems import ProblemError

IDEMPOTENCY_HEADER = "idempotency-key"
CHARGE: Literal["MINIAPP_CHARGE"] = "MINIAPP_CHARGE"
_canonical = msgspec.json.Encoder(order="deterministic")


def intent_key(request_id: uuid.UUID) -> str:
    """The Idempotency-Key the charge of a payment request is submitted with."""
    return f"payment-request:{request_id}"


def charge(
    merchant_id: str, user_id: str, miniapp_id: str, amount: int, currency: str, description: str
) -> CreateIntent:
    """The MINIAPP_CHARGE a payment request stands for."""
    return CreateIntent(
        type=CHARGE,
        amount=amount,
        currency=currency,  # type: ignore[arg-type]
        from_=UserParty(id=user_id),
        to=MerchantParty(id=merchant_id),
        miniapp_id=miniapp_id,
        comment=description or None,
    )


def charge_of(row: asyncpg.Record) -> CreateIntent:
    """The charge of a stored payment request."""
    return charge(
        row["merchant_id"],
        row["user_id"],
        row["miniapp_id"],
        row["amount"],
        row["currency"],
        row["description"],
    )


def view(row: asyncpg.Record) -> PaymentRequest:
    return PaymentRequest(
        id=str(row["id"]),
        status=row["shown"],
        merchant_id=row["merchant_id"],
        miniapp_id=row["miniapp_id"],
        user_id=row["user_id"],
        amount=row["amount"],
        currency=row["currency"],
        description=row["description"],
        intent_id=str(row["intent_id"]) if row["intent_id"] is not None else None,
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        decided_at=row["decided_at"],
    )


def _merchant_of(caller: Caller) -> str:
    require_operation(caller, CHARGE)
    if caller.permissions.merchant is None:
        raise refuse(403, "merchant_key_required", "a payment request is made with a merchant's key")
    return caller.permissions.merchant


async def create(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    wanted: CreatePaymentRequest = given.body
    key: str = given.params[IDEMPOTENCY_HEADER]
    caller = await web.caller(request)
    merchant = _merchant_of(caller)
    request_hash = hashlib.sha256(_canonical.encode(wanted)).digest()
    async with d.pool.acquire() as conn:
        asked = charge(
            merchant, wanted.user_id, wanted.miniapp_id, wanted.amount, wanted.currency, wanted.description
        )
        await merchant_access.check(conn, caller, asked)
        row = await conn.fetchrow(
            q.INSERT_PAYMENT_REQUEST,
            uuid.uuid4(),
            merchant,
            wanted.miniapp_id,
            wanted.user_id,
            wanted.amount,
            wanted.currency,
            wanted.description,
            caller.key_id,
            key,
            request_hash,
            float(wanted.expires_in_s),
        )
        replayed = row is None
        if row is None:
            row = await conn.fetchrow(q.SELECT_PAYMENT_REQUEST_BY_KEY, caller.key_id, key)
            assert row is not None
            if bytes(row["request_hash"]) != request_hash:
                raise ProblemError(
                    409, "idempotency_key_reused", "this Idempotency-Key was used with another body"
                )
    headers = {"Location": f"/v1/payment-requests/{row['id']}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json(view(row), 201, headers)


async def show(request: Request) -> Response:
    d = web.deps(request)
    request_id: uuid.UUID = web.inputs(request).params["request_id"]
    caller = await web.caller(request)
    merchant = _merchant_of(caller)
    async with d.pool.acquire() as conn:
        row = await conn.fetchrow(q.SELECT_PAYMENT_REQUEST, request_id)
    # Another merchant's request is reported as missing: ids do not leak across merchants.
    if row is None or row["merchant_id"] != merchant:
        raise ProblemError(404, "payment_request_not_found", "no such payment request")
    return web.json(view(row))
