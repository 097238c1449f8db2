"""`POST /v1/intents` (intake), `GET /v1/intents/{id}` and `GET /v1/intents` (docs/api.md).

Intake: authenticate, decode and check the request, check the key's permissions, refuse under
back-pressure, then write the intent (CREATED), its first timeline entry and its `pm:intents`
message in one statement; only after that commits is the message published and 202 sent. A crash
after the commit loses nothing: the orchestrator's outbox relay publishes the row, and the
orchestrator resumes intents left in CREATED.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from datetime import datetime

import msgspec
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import (
    MINIAPP_TYPES,
    TERMINAL_STATES,
    CreateIntent,
    Exchange,
    Intent,
    IntentPage,
    Links,
    Party,
)
from pm_gateway import cursors, fx, merchant_access, refunds, shapes, views, web
from pm_gateway import queries as q
from pm_gateway.auth import Caller, refuse, require_operation, require_owner
from pm_gateway.ids import uuid7
from pm_gateway.problems import ProblemError
from pm_gateway.writes import NewIntent, Write, insert
from pm_shared import messages
from pm_shared.streams import BackPressureError
from pm_shared.streams.names import INTENTS
from pm_shared.streams.publisher import PAYLOAD_FIELD, encode

log = logging.getLogger(__name__)

BACKPRESSURE = Counter("pm_gateway_backpressure_total", "Intake requests refused under back-pressure.")

IDEMPOTENCY_HEADER = "idempotency-key"
INTENTS_PATH = "/v1/intents"
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*([0-9]{1,9})(?![0-9])", re.IGNORECASE)
_canonical = msgspec.json.Encoder(order="deterministic")


def wait_seconds(request: Request, cap: int) -> int:
    match = _PREFER_WAIT.search(web.inputs(request).params.get("prefer") or "")
    return min(int(match.group(1)), cap) if match else 0


def _message_party(party: Party) -> messages.Party:
    fields = msgspec.structs.asdict(party)
    return messages.Party(kind=type(party).__struct_config__.tag, **fields)  # type: ignore[arg-type]


async def create(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    key: str = given.params[IDEMPOTENCY_HEADER]
    intent_request: CreateIntent = given.body
    shapes.check(intent_request)
    caller = await web.caller(request)
    require_operation(caller, intent_request.type)
    require_owner(caller, shapes.acting_owner(intent_request))
    if intent_request.type == "MINIAPP_CHARGE":
        raise refuse(403, "charge_needs_consent", "a charge is made by a payment request the user confirms")
    if intent_request.type in MINIAPP_TYPES:
        async with d.pool.acquire() as conn:
            await merchant_access.check(conn, caller, intent_request)
    if intent_request.type == "REFUND":
        await refunds.check(request, caller, intent_request)
        return await submit(request, caller, key, intent_request)
    if intent_request.quote_id is not None:
        # An exchange is its quote carried out: the intent takes the quote's id (one intent per quote).
        exchange = await fx.quote_of(request, intent_request)
        return await submit(
            request, caller, key, intent_request, intent_id=intent_request.quote_id, exchange=exchange
        )
    if intent_request.type == "SBP_TOPUP" and intent_request.currency != shapes.NATIVE_CURRENCY["SBP_TOPUP"]:
        # Roubles collected, exchanged into the wallet's currency: the Idempotency-Key still answers
        # for the request as sent (its hash), the intent is made in roubles with its exchange. A
        # repeat is not priced again (a rate gone stale since must not turn it into a refusal).
        asked_hash = _request_hash(intent_request)
        async with d.pool.acquire() as conn:
            made = await conn.fetchval(q.INTENT_BY_IDEMPOTENCY_KEY, caller.key_id, key)
        if made is None:
            quote_id, collected, exchange = await fx.topup(request, caller.key_id, intent_request)
            return await submit(
                request,
                caller,
                key,
                collected,
                intent_id=quote_id,
                exchange=exchange,
                request_hash=asked_hash,
            )
        return await submit(request, caller, key, intent_request, request_hash=asked_hash)
    return await submit(request, caller, key, intent_request)


async def submit(
    request: Request,
    caller: Caller,
    key: str,
    intent_request: CreateIntent,
    *,
    intent_id: uuid.UUID | None = None,
    links: str = INTENTS_PATH,
    exchange: Exchange | None = None,
    request_hash: bytes | None = None,
) -> Response:
    """Write, publish and answer an intent that has passed every check (or find the one `key` made):
    `POST /v1/intents`, and the front door's (`/v1/me/...`), whose answers link under `links`.
    The intent is written by `insert`, a REFUND by its own step (`refunds.write`)."""
    d = web.deps(request)
    request_hash = request_hash or _request_hash(intent_request)
    write: Write = refunds.write if intent_request.type == "REFUND" else insert
    wait = wait_seconds(request, d.settings.max_wait_s)

    # Refused under back-pressure before anything is written (a replay too: it can come back later).
    intent_id = intent_id or uuid7()
    stream_key = d.publisher.key_for(INTENTS, str(intent_id))
    try:
        await d.publisher.admit(stream_key)
    except BackPressureError as exc:
        BACKPRESSURE.inc()
        retry = max(1, round(exc.retry_after_s))
        raise ProblemError(
            503,
            "backpressure",
            "too many intents in flight; retry later",
            headers={"Retry-After": str(retry)},
        ) from None
    message = _message(caller, intent_id, intent_request)
    payload = encode(message)
    new = NewIntent.of(intent_id, caller, key, request_hash, intent_request, exchange)
    if write is insert:
        written = await d.intake.insert(new, message, payload)  # with concurrent requests' intents
    else:
        async with d.pool.acquire() as conn:
            written = await write(conn, new, message, payload)
    replayed = written.created_at is None
    if written.created_at is not None:
        await _publish(request, stream_key, message.message_id, payload)
        answer = views.new_intent(str(intent_id), intent_request, written.created_at, exchange)
        if wait:
            answer = await read(request, intent_id, wait, payment_answers=True)
    else:
        if written.request_hash != request_hash:
            raise ProblemError(
                409, "idempotency_key_reused", "this Idempotency-Key was used with another body"
            )
        answer = await read(request, written.intent_id, wait, payment_answers=True)
    answer = linked(answer, links)
    headers = {"Location": answer.links.self_}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    if wait:
        headers["Preference-Applied"] = f"wait={wait}"
    return web.json(answer, 202, headers)


def linked(answer: Intent, links: str) -> Intent:
    """`answer` with its self link under `links` (the front door's callers read `/v1/me/intents`)."""
    if links == INTENTS_PATH:
        return answer
    return msgspec.structs.replace(answer, links=Links(self_=f"{links}/{answer.id}"))


def _request_hash(r: CreateIntent) -> bytes:
    """sha256 of the canonical request. A field added later is left out while it is unset, so an
    Idempotency-Key used before the field existed still matches its request after an upgrade."""
    fields = msgspec.to_builtins(r)
    for later in ("miniappId", "quoteId", "originalIntentId"):
        if fields.get(later) is None:
            fields.pop(later, None)
    return hashlib.sha256(_canonical.encode(fields)).digest()


def _message(caller: Caller, intent_id: uuid.UUID, r: CreateIntent) -> messages.IntentSubmitted:
    return messages.IntentSubmitted(
        intent_id=str(intent_id),
        message_id=f"{intent_id}:submitted",
        produced_at=messages.now(),
        type=r.type,
        amount=r.amount,
        currency=r.currency,
        source=_message_party(r.from_),
        target=_message_party(r.to),
        key_id=caller.key_id,
        from_name=r.from_name,
        to_name=r.to_name,
        comment=r.comment,
        requires_monitoring=r.requires_monitoring,
        metadata=r.metadata,
    )


async def _publish(request: Request, stream_key: str, message_id: str, payload: bytes) -> None:
    d = web.deps(request)
    try:
        await d.publisher.add(stream_key, {PAYLOAD_FIELD: payload})
    except Exception as exc:
        # Committed already: the 202 stands, and the orchestrator's outbox relay publishes the row.
        log.warning("intent message %s committed but not published yet: %r", message_id, exc)
        return
    d.marks.add(message_id)


async def read(request: Request, intent_id: uuid.UUID, wait: int, *, payment_answers: bool = False) -> Intent:
    """The intent, after waiting up to `wait` s until it is terminal or its payer gets a QR to pay.

    `payment_answers`: a QR already there answers at once (a POST: its caller has not seen the QR
    yet). A GET waits for the end then, as its caller may have shown the QR already — and the QR's
    event, which wakes a waiter, has passed.
    """
    d = web.deps(request)
    with d.waiters.waiting_for(str(intent_id)) as terminal:
        answer = await _load(request, intent_id)
        if answer is None:
            raise ProblemError(404, "intent_not_found", "no such intent")
        if wait and answer.status not in TERMINAL_STATES and not (payment_answers and answer.payment):
            try:
                await asyncio.wait_for(asyncio.shield(terminal), wait)
            except TimeoutError:
                return answer
            answer = await _load(request, intent_id) or answer
    return answer


async def _load(request: Request, intent_id: uuid.UUID) -> Intent | None:
    d = web.deps(request)
    async with d.pool.acquire() as conn:
        return await views.load(conn, intent_id)


async def get(request: Request) -> Response:
    d = web.deps(request)
    intent_id: uuid.UUID = web.inputs(request).params["intent_id"]
    caller = await web.caller(request)
    async with d.pool.acquire() as conn:
        row = await conn.fetchrow(q.SELECT_INTENT, intent_id)
    # Another key's intent is reported as missing, not forbidden: ids do not leak across keys.
    if row is None or (row["key_id"] != caller.key_id and not caller.permissions.admin):
        raise ProblemError(404, "intent_not_found", "no such intent")
    wait = wait_seconds(request, d.settings.max_wait_s)
    answer = await read(request, intent_id, wait)
    return web.json(answer, 200, {"Preference-Applied": f"wait={wait}"} if wait else None)


def _cursor(value: str | None) -> tuple[datetime | None, uuid.UUID | None]:
    if not value:
        return None, None
    at, ident = cursors.decode(value)
    try:
        return at, uuid.UUID(ident)
    except ValueError:
        raise cursors.invalid() from None


def _next_cursor(intent: Intent) -> str:
    assert intent.created_at is not None
    return cursors.encode(intent.created_at, intent.id)


async def list_(request: Request) -> Response:
    d = web.deps(request)
    given = web.inputs(request)
    count: int = given.params["limit"]
    after_at, after_id = _cursor(given.params["cursor"])
    caller = await web.caller(request)
    async with d.pool.acquire() as conn:
        rows = await conn.fetch(
            q.LIST_INTENTS,
            None if caller.permissions.admin else caller.key_id,
            after_at,
            after_id,
            count + 1,
        )
    items = [views.intent(row) for row in rows[:count]]
    more = len(rows) > count
    return web.json(IntentPage(items=items, next_cursor=_next_cursor(items[-1]) if more else None))
