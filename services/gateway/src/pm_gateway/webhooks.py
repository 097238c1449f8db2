"""`POST /v1/webhooks/ipps` and `POST /v1/webhooks/qp`: the PSPs' callbacks, passed on as hints.

Not signed with a PM service key (a PSP has none): each PSP signs with its own shared secret
(`psp_callbacks`). Checks, in this order, each refusal changing nothing (`pm_gateway.inputs` runs them,
from `hooks`): the source address is on the PSP's allowlist (403 `forbidden_source`), the signature
is valid and fresh over the raw bytes (401 `invalid_signature`), the body is a callback (400, 415,
422: an id PM could not act on, such as one with a NUL character, is refused here rather than
accepted and lost later; an IPPS `transfer.returned` without its event id and refund, or whose
refund names another transfer, is a 422 `invalid_callback`). Then the callback is deduplicated on its
event id and published as a `PspHint` on `pm:psp:<psp>:hints`, a refund's with its `refund_id`
(docs/psp.md#refund-notifications: nothing is credited on the gateway's word).

A callback is only a hint: the adapter reads the PSP's status itself before any final transition,
so reordered or stale callbacks are passed on as they come. The dedupe mark is set only after the
hint is published: a crash in between re-publishes a hint (harmless, hints are idempotent and carry
the same message id), never loses one; so may two deliveries of one event arriving at the same
moment. A redelivery is answered 200 so the PSP stops retrying; a full or unreachable Redis is a 503
with Retry-After, so it retries.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import Counter
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from pm_gateway import psp_callbacks, sources, web
from pm_gateway.problems import ProblemError
from pm_gateway.settings import Settings, networks
from pm_shared import messages
from pm_shared.streams import BackPressureError
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import IPPS_HINTS, QP_HINTS, StreamSpec

CALLBACKS = Counter(
    "pm_webhook_callbacks_total", "Inbound PSP callbacks by PSP and outcome.", ["psp", "outcome"]
)
SEEN_PREFIX = "pm:webhooks:seen:"
# Problem codes that are the sender's fault, by the outcome they are counted as.
_OUTCOMES = {
    "forbidden_source": "forbidden_source",
    "invalid_signature": "invalid_signature",
    "backpressure": "unavailable",
    "unavailable": "unavailable",
}


class WebhookAck(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to an accepted callback; `duplicate` when it had been passed on before."""

    accepted: bool
    duplicate: bool


@dataclass(frozen=True)
class Hint:
    """What a callback says, whichever PSP sent it."""

    event_id: str
    idempotency_key: str
    psp_reference: str
    claimed_status: str
    refund_id: str | None = None


@dataclass(frozen=True)
class Psp:
    name: str
    stream: StreamSpec
    allowlist: Callable[[Settings], str]
    verify: Callable[[Settings, Request, bytes, float], bool]
    parse: Callable[[Any], Hint]


def _verify_ipps(settings: Settings, request: Request, body: bytes, now: float) -> bool:
    header = request.headers.get(psp_callbacks.IPPS_SIGNATURE_HEADER)
    return psp_callbacks.verify_ipps(settings.ipps_callback_secret, header, body, now)


def _verify_qp(settings: Settings, request: Request, body: bytes, now: float) -> bool:
    return psp_callbacks.verify_qp(
        settings.qp_callback_secret,
        request.headers.get(psp_callbacks.QP_TIMESTAMP_HEADER),
        request.headers.get(psp_callbacks.QP_SIGNATURE_HEADER),
        body,
        now,
    )


RETURNED = "transfer.returned"


def _ipps_refund_hint(callback: psp_callbacks.IppsCallback) -> Hint:
    """A refund's hint: the callback must name its event and a refund of the transfer it carries."""
    transfer, refund = callback.transfer, callback.refund
    if callback.event != RETURNED or refund is None or callback.event_id is None:
        raise ProblemError(
            422, "invalid_callback", f"a refund comes as {RETURNED} with an event_id and a refund"
        )
    if (refund.transfer_id, refund.idempotency_key) != (transfer.transfer_id, transfer.idempotency_key):
        raise ProblemError(422, "invalid_callback", "the refund names another transfer than the callback")
    return Hint(
        event_id=f"refund:{callback.event_id}",
        idempotency_key=refund.idempotency_key,
        psp_reference=refund.transfer_id,
        claimed_status=refund.status,
        refund_id=refund.refund_id,
    )


def _ipps_hint(callback: psp_callbacks.IppsCallback) -> Hint:
    transfer = callback.transfer
    if callback.refund is not None or callback.event == RETURNED:
        return _ipps_refund_hint(callback)
    return Hint(
        # IPPS has no event id: a transfer's event at a sequence number is one event.
        event_id=f"{transfer.transfer_id}:{callback.event}:{callback.sequence}",
        idempotency_key=transfer.idempotency_key,
        psp_reference=transfer.transfer_id,
        claimed_status=transfer.status,
    )


def _qp_hint(callback: psp_callbacks.QpCallback) -> Hint:
    return Hint(
        event_id=callback.event_id,
        idempotency_key=callback.order,
        psp_reference=callback.qr_id,
        claimed_status=callback.status,
    )


IPPS = Psp(
    "ipps",
    IPPS_HINTS,
    lambda s: s.ipps_callback_allowlist,
    _verify_ipps,
    _ipps_hint,
)
QP = Psp(
    "qp",
    QP_HINTS,
    lambda s: s.qp_callback_allowlist,
    _verify_qp,
    _qp_hint,
)


def seen_key(psp: str, event_id: str) -> str:
    return f"{SEEN_PREFIX}{psp}:{event_id}"


def message_id(psp: str, event_id: str) -> str:
    """The hint's message id: the same for every delivery of one event, so a re-publish is recognisable."""
    return hashlib.blake2b(f"psp-hint\0{psp}\0{event_id}".encode(), digest_size=16).hexdigest()


def _message(psp: str, hint: Hint) -> messages.PspHint:
    return messages.PspHint(
        intent_id=messages.intent_of_psp_key(hint.idempotency_key) or "",
        message_id=message_id(psp, hint.event_id),
        produced_at=messages.now(),
        psp=psp,
        idempotency_key=hint.idempotency_key,
        psp_reference=hint.psp_reference,
        claimed_status=hint.claimed_status,
        event_id=hint.event_id,
        refund_id=hint.refund_id,
    )


def _guard(psp: Psp) -> Callable[[Request], None]:
    def guard(request: Request) -> None:
        settings = web.deps(request).settings
        trusted = networks(settings.callback_trusted_proxies)
        if not sources.allowed(request, networks(psp.allowlist(settings)), trusted):
            raise ProblemError(403, "forbidden_source", f"callbacks from {psp.name} come from elsewhere")

    return guard


def _verify(psp: Psp) -> Callable[[Request, bytes], None]:
    def verify(request: Request, body: bytes) -> None:
        if not psp.verify(web.deps(request).settings, request, body, time.time()):
            raise ProblemError(401, "invalid_signature", "missing, stale or wrong signature")

    return verify


def _count(psp: Psp) -> Callable[[ProblemError], None]:
    def count(exc: ProblemError) -> None:
        CALLBACKS.labels(psp.name, _OUTCOMES.get(exc.code, "malformed")).inc()

    return count


async def _receive(request: Request, psp: Psp) -> Response:
    d = web.deps(request)
    hint = psp.parse(web.inputs(request).body)
    key = seen_key(psp.name, hint.event_id)
    if await d.redis.exists(key):
        CALLBACKS.labels(psp.name, "duplicate").inc()
        return web.json(WebhookAck(accepted=True, duplicate=True))
    try:
        await d.publisher.publish(psp.stream, _message(psp.name, hint))
    except BackPressureError as exc:
        raise ProblemError(
            503,
            "backpressure",
            "too many hints waiting for the adapter; retry later",
            headers={"Retry-After": str(max(1, round(exc.retry_after_s)))},
        ) from None
    except StreamMissingError:
        raise ProblemError(
            503,
            "unavailable",
            "the hints stream is not provisioned; retry later",
            headers={"Retry-After": "5"},
        ) from None
    await d.redis.set(key, b"1", nx=True, ex=d.settings.callback_dedupe_ttl_s)
    CALLBACKS.labels(psp.name, "accepted").inc()
    return web.json(WebhookAck(accepted=True, duplicate=False))


async def _counted(request: Request, psp: Psp) -> Response:
    """`_receive`, with what went wrong after the input was accepted counted (refusals of the input
    itself are counted by `Endpoint.on_problem`, see `hooks`)."""
    try:
        return await _receive(request, psp)
    except ProblemError as exc:
        CALLBACKS.labels(psp.name, _OUTCOMES.get(exc.code, "malformed")).inc()
        raise
    except (RedisError, OSError):
        # Redis unreachable or timing out: the app answers 503 with Retry-After; the PSP will retry.
        CALLBACKS.labels(psp.name, "unavailable").inc()
        raise
    except Exception:
        CALLBACKS.labels(psp.name, "error").inc()
        raise


async def ipps(request: Request) -> Response:
    return await _counted(request, IPPS)


async def qp(request: Request) -> Response:
    return await _counted(request, QP)


@dataclass(frozen=True)
class Hooks:
    """What the route list gives a PSP's callback endpoint: checks before decoding, and a counter."""

    guard: Callable[[Request], None]
    verify: Callable[[Request, bytes], None]
    on_problem: Callable[[ProblemError], None]


def hooks(psp: Psp) -> Hooks:
    return Hooks(_guard(psp), _verify(psp), _count(psp))
