"""REFUND intents on `POST /v1/intents` (docs/refunds.md): a merchant gives back all or part of one of
its settled MINIAPP_CHARGEs, from its account to the payer's wallet.

Who may: a merchant's key, for its own account (403 `forbidden_merchant` otherwise) and only for an
intent its account is a party to — any other id is 404 `original_not_found`, as a missing one is, so
ids do not leak across merchants; an admin key, for any charge. Any other key is 403
`merchant_key_required`. What may be refunded, and how much, is decided where the refund is written
(`pm_shared.intents.refunds.create`, under a lock on the original): `write` is intake's write step
for a REFUND, so back-pressure, publishing, the answer and `Prefer: wait` stay intake's
(`pm_gateway.intents.submit`).
"""

from __future__ import annotations

import json

import msgspec
from starlette.requests import Request

from pm_client.api import CreateIntent, MerchantParty
from pm_gateway import queries as q
from pm_gateway import web
from pm_gateway.auth import Caller, refuse
from pm_gateway.problems import ProblemError
from pm_gateway.writes import NewIntent, Written
from pm_shared import messages
from pm_shared.db import Conn
from pm_shared.intents import refunds
from pm_shared.streams.names import INTENTS

__all__ = ["CODES", "check", "write"]

CODES: dict[int, tuple[str, ...]] = {
    404: ("original_not_found",),
    409: ("original_not_settled", "refund_exceeds_original"),
    422: ("original_not_refundable", "refund_parties_mismatch", "refund_currency_mismatch"),
}
"""The problems a refund may be refused with, by status, besides intake's own (docs/api.md, "Errors")."""


def _not_found() -> ProblemError:
    return ProblemError(404, "original_not_found", "no such intent to refund")


async def check(request: Request, caller: Caller, r: CreateIntent) -> None:
    """Refuse (403, or 404 for an original the caller may not see) a refund `caller` may not ask for."""
    if caller.permissions.admin:
        return
    merchant = caller.permissions.merchant
    if merchant is None:
        raise refuse(403, "merchant_key_required", "a REFUND is made with a merchant's key (or an admin's)")
    assert isinstance(r.from_, MerchantParty)  # shapes.check ruled out anything else
    if r.from_.id != merchant:
        raise refuse(403, "forbidden_merchant", "a merchant's key touches only its own account")
    party = json.dumps({"kind": "merchant", "id": merchant})
    async with web.deps(request).pool.acquire() as conn:
        if not await conn.fetchval(q.IS_PARTY_TO_INTENT, r.original_intent_id, party):
            raise _not_found()


async def write(conn: Conn, new: NewIntent, message: messages.IntentSubmitted, payload: bytes) -> Written:
    """Intake's write step for a REFUND: `pm_shared.intents.refunds.create` (one transaction, under
    the original's row lock); its refusals become the API's problems."""
    assert new.original_intent_id is not None  # CreateIntent requires it for a REFUND
    refund = refunds.NewRefund(
        id=new.id,
        key_id=new.key_id,
        idempotency_key=new.idempotency_key,
        request_hash=new.hash_bytes,
        amount=new.amount,
        currency=new.currency,
        source=msgspec.to_builtins(new.source),
        target=msgspec.to_builtins(new.target),
        original_intent_id=new.original_intent_id,
        comment=new.comment,
        from_name=new.from_name,
        to_name=new.to_name,
        metadata=new.metadata,
    )
    try:
        made = await refunds.create(
            conn, refund, stream=INTENTS.name, message_id=message.message_id, payload=payload
        )
    except refunds.RefundRefusedError as exc:
        raise ProblemError(exc.status, exc.code, exc.detail) from None
    return Written(made.intent_id, None if made.replayed else made.created_at, made.request_hash)
