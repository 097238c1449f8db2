"""The IPPS sandbox as a Starlette app: a PromptPay payout API (inquiry → confirm → status).

Routes (JSON bodies, amounts in integer satang; errors are `application/problem+json` with a `code`):

- `POST /v1/inquiry` `InquiryRequest` → 200 `Inquiry` (receiver's masked name, `inquiry_id`, `expires_at`)
- `POST /v1/transfers` `ConfirmRequest` (+ `Idempotency-Key` header) → 201 `Transfer` when created,
  200 with `Idempotent-Replayed: true` when the key was seen: one key, one transfer, one payment
- `GET /v1/transfers/{transfer_id}` and `GET /v1/transfers?idempotency_key=K` → 200 `Transfer`
  (with its `refunds` and `returned_amount`)
- `GET /v1/refunds/{refund_id}` → 200 `Refund`: a transfer sent back by the receiving bank, the
  only word on a refund a `transfer.returned` callback announces
- `GET /v1/settlements/{day}` → 200 `text/csv`, the day's settlement report (see `settlement`)
- `GET /healthz`; `GET /_sim/callbacks` (the last 10,000 delivery attempts); `GET /_sim/ledger`
  (satang paid out and returned, transfers made); `GET`/`POST`/`DELETE /_sim/settlement` (the
  report's faults)
- `POST /_sim/transfers/{transfer_id}/return` `ReturnRequest` → 201 `Refund`: the receiving bank
  sends a settled transfer (or part of it) back, and a `transfer.returned` callback goes out (409
  `TRANSFER_NOT_SETTLED`, 422 `REFUND_EXCEEDS_TRANSFER`)
- `POST /_sim/refunds/{refund_id}/callback` `CallbackRequest` → 202 `{"event_id"}`: the refund's
  callback again (the same event, or a new one), now or late
- `POST /_sim/outage` `{"requests": N}` → 200 `{"requests": N}`: the next N `/v1` requests answer 503
  `SERVER_ERROR` before doing anything (IPPS down, for clients that cannot send a fault header)

`faults` describes the faults a request can ask for; `callbacks` the signed callbacks.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypedDict

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pm_sandbox_ipps import faults as faults_
from pm_sandbox_ipps import registry
from pm_sandbox_ipps import settlement as settlement_
from pm_sandbox_ipps.callbacks import Notifier
from pm_sandbox_ipps.faults import Faults
from pm_sandbox_ipps.models import (
    CallbackRequest,
    ConfirmRequest,
    InquiryRequest,
    OutageRequest,
    Problem,
    ReturnRequest,
    SandboxError,
)
from pm_sandbox_ipps.settings import Settings
from pm_sandbox_ipps.state import Store, TransferRecord
from pm_shared.psp import ipps_signing as signing
from pm_shared.psp import settlement as report_format

IDEMPOTENCY_HEADER = "Idempotency-Key"

_encoder = msgspec.json.Encoder()
_inquiry = msgspec.json.Decoder(InquiryRequest)
_confirm = msgspec.json.Decoder(ConfirmRequest)
_report_faults = msgspec.json.Decoder(settlement_.FaultRequest)
_return = msgspec.json.Decoder(ReturnRequest)
_callback = msgspec.json.Decoder(CallbackRequest)
_outage = msgspec.json.Decoder(OutageRequest)


@dataclass
class Sandbox:
    settings: Settings
    store: Store
    notifier: Notifier
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    report_faults: settlement_.ReportFaults = field(default_factory=settlement_.ReportFaults)
    outage: int = 0
    """`/v1` requests still to be answered 503 (`POST /_sim/outage`)."""

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def settle_later(self, record: TransferRecord) -> None:
        await asyncio.sleep(self.settings.pending_ms / 1000)
        if self.store.settle(record):
            self.notifier.final(record)


class State(TypedDict):
    sandbox: Sandbox


def sandbox(request: Request) -> Sandbox:
    found: Sandbox = request.state.sandbox
    return found


def _json(body: msgspec.Struct | list[Any] | dict[str, Any], status: int = 200, **headers: str) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type="application/json", headers=headers)


async def _prelude(request: Request) -> tuple[Sandbox, bytes, Faults]:
    """Authenticate, read the faults asked for, wait the simulated latency; the body read on the way."""
    box = sandbox(request)
    body = await request.body()
    if box.settings.auth_secret:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")

        def message(t: int) -> bytes:
            return signing.request_message(t, request.method, target, body)

        header = request.headers.get(signing.HEADER, "")
        if not signing.verify(
            box.settings.auth_secret, header, message, box.store.clock(), box.settings.auth_max_skew_s
        ):
            raise SandboxError(401, "INVALID_SIGNATURE", f"missing, stale or wrong {signing.HEADER}")
    if box.outage > 0:
        box.outage -= 1
        raise SandboxError(503, "SERVER_ERROR", "sandbox outage: nothing was committed")
    faults = faults_.parse(request.headers.get(faults_.HEADER, ""))
    delay_ms = box.settings.latency_ms + faults.slow_ms
    if delay_ms:
        await asyncio.sleep(delay_ms / 1000)
    if faults.server_error:
        raise SandboxError(503, "SERVER_ERROR", "fault server-error: nothing was committed")
    return box, body, faults


async def inquiry(request: Request) -> Response:
    box, body, faults = await _prelude(request)
    asked = _inquiry.decode(body)
    receiver = registry.lookup(asked)
    reject = faults_.for_target(faults, receiver.magic).reject
    if reject == "PROXY_NOT_FOUND":
        raise SandboxError(422, reject, "no PromptPay registration for this target")
    if reject == "ACCOUNT_CLOSED":
        raise SandboxError(422, reject, "the receiving account is closed")
    if reject == "BANK_UNSUPPORTED":
        raise SandboxError(422, reject, "the receiving bank does not support this service")
    return _json(box.store.inquire(receiver, asked.amount))


async def confirm(request: Request) -> Response:
    box, body, faults = await _prelude(request)
    asked = _confirm.decode(body)
    header_key = request.headers.get(IDEMPOTENCY_HEADER)
    if header_key and asked.idempotency_key and header_key != asked.idempotency_key:
        raise SandboxError(422, "IDEMPOTENCY_KEY_CONFLICT", "the header and the body name different keys")
    key = header_key or asked.idempotency_key
    if not key:
        raise SandboxError(422, "MISSING_IDEMPOTENCY_KEY", f"send {IDEMPOTENCY_HEADER} or idempotency_key")
    if len(key) > 128:
        raise SandboxError(422, "INVALID_IDEMPOTENCY_KEY", "an idempotency key is at most 128 characters")
    faults = faults_.for_amount(faults, asked.amount)
    if faults.server_error:
        raise SandboxError(503, "SERVER_ERROR", "fault server-error: nothing was committed")
    record, created = box.store.confirm(asked, key, faults)
    if created:
        if record.status != "PENDING":
            box.notifier.final(record)
        elif record.faults.pending:
            box.spawn(box.settle_later(record))
        if faults.server_error_after_commit:
            raise SandboxError(500, "SERVER_ERROR", "fault server-error-after-commit: the transfer exists")
        if faults.timeout:
            await asyncio.sleep(box.settings.hang_s)
        return _json(record.view(), 201, Location=f"/v1/transfers/{record.transfer_id}")
    return _json(record.view(), 200, **{"Idempotent-Replayed": "true"})


def _answer(box: Sandbox, record: TransferRecord | None, what: str) -> Response:
    if record is None:
        raise SandboxError(404, "TRANSFER_NOT_FOUND", f"no transfer {what}")
    status, settled = box.store.poll(record)
    if settled:
        box.notifier.final(record)
    return _json(record.view(status))


async def transfer(request: Request) -> Response:
    box, _, _ = await _prelude(request)
    transfer_id = request.path_params["transfer_id"]
    return _answer(box, box.store.transfers.get(transfer_id), repr(transfer_id))


async def transfer_by_key(request: Request) -> Response:
    box, _, _ = await _prelude(request)
    key = request.query_params.get("idempotency_key")
    if not key:
        raise SandboxError(400, "MISSING_IDEMPOTENCY_KEY", "GET /v1/transfers needs ?idempotency_key=")
    return _answer(box, box.store.by_key.get(key), f"with idempotency key {key!r}")


async def refund(request: Request) -> Response:
    box, _, _ = await _prelude(request)
    refund_id = request.path_params["refund_id"]
    found = box.store.refunds.get(refund_id)
    if found is None:
        raise SandboxError(404, "REFUND_NOT_FOUND", f"no refund {refund_id!r}")
    return _json(found.view())


async def sim_return(request: Request) -> Response:
    box = sandbox(request)
    body = await request.body()
    asked = _return.decode(body or b"{}")
    transfer_id = request.path_params["transfer_id"]
    record = box.store.transfers.get(transfer_id)
    if record is None:
        raise SandboxError(404, "TRANSFER_NOT_FOUND", f"no transfer {transfer_id!r}")
    made = box.store.return_transfer(record, asked.amount, asked.allow_excess)
    if asked.callback == "now":
        box.notifier.refund(made)
    return _json(made.view(), 201, Location=f"/v1/refunds/{made.refund_id}")


async def sim_refund_callback(request: Request) -> Response:
    box = sandbox(request)
    body = await request.body()
    asked = _callback.decode(body or b"{}")
    refund_id = request.path_params["refund_id"]
    found = box.store.refunds.get(refund_id)
    if found is None:
        raise SandboxError(404, "REFUND_NOT_FOUND", f"no refund {refund_id!r}")
    sent = box.notifier.refund(found, new_event=asked.new_event, delay_s=asked.delay_ms / 1000)
    return _json({"event_id": sent}, 202)


async def sim_outage(request: Request) -> Response:
    box = sandbox(request)
    box.outage = _outage.decode(await request.body()).requests
    return _json({"requests": box.outage})


async def settlement(request: Request) -> Response:
    box, _, _ = await _prelude(request)
    day = report_format.parse_day(request.path_params["day"])
    if day is None:
        raise SandboxError(400, "INVALID_DAY", "a settlement day is a UTC date, YYYY-MM-DD")
    text = settlement_.report(box.store.transfers.values(), box.report_faults, day)
    return Response(text, media_type=report_format.MEDIA_TYPE)


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def sim_callbacks(request: Request) -> Response:
    return _json(list(sandbox(request).store.deliveries))


async def sim_ledger(request: Request) -> Response:
    store = sandbox(request).store
    return _json({"paid": store.paid, "returned": store.returned, "transfers": len(store.transfers)})


async def sim_settlement(request: Request) -> Response:
    box = sandbox(request)
    if request.method == "POST":
        box.report_faults.add(_report_faults.decode(await request.body()), box.store.clock())
    elif request.method == "DELETE":
        box.report_faults.clear()
    return _json(box.report_faults.view())


def _problem(problem: Problem) -> Response:
    return Response(_encoder.encode(problem), problem.status, media_type="application/problem+json")


async def sandbox_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SandboxError)
    return _problem(exc.problem())


async def decode_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, msgspec.DecodeError)
    if isinstance(exc, msgspec.ValidationError):
        return _problem(Problem(status=422, code="INVALID_REQUEST", title="invalid request", detail=str(exc)))
    return _problem(Problem(status=400, code="INVALID_JSON", title="invalid json", detail=str(exc)))


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return _problem(Problem(status=exc.status_code, code=code, title=code.replace("_", " ").lower()))


def create_app(settings: Settings, clock: Callable[[], float] = time.time) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        store = Store(clock=clock, inquiry_ttl_s=settings.inquiry_ttl_s)
        timeout = httpx.Timeout(settings.callback_timeout_ms / 1000)
        async with httpx.AsyncClient(timeout=timeout) as http:
            box = Sandbox(settings, store, Notifier(settings, store, http))
            try:
                yield {"sandbox": box}
            finally:
                for task in list(box.tasks):
                    task.cancel()
                await asyncio.gather(*box.tasks, return_exceptions=True)
                await box.notifier.aclose()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/inquiry", inquiry, methods=["POST"]),
            Route("/v1/transfers", confirm, methods=["POST"]),
            Route("/v1/transfers", transfer_by_key, methods=["GET"]),
            Route("/v1/transfers/{transfer_id}", transfer, methods=["GET"]),
            Route("/v1/refunds/{refund_id}", refund, methods=["GET"]),
            Route("/v1/settlements/{day}", settlement, methods=["GET"]),
            Route("/_sim/callbacks", sim_callbacks, methods=["GET"]),
            Route("/_sim/ledger", sim_ledger, methods=["GET"]),
            Route("/_sim/settlement", sim_settlement, methods=["GET", "POST", "DELETE"]),
            Route("/_sim/transfers/{transfer_id}/return", sim_return, methods=["POST"]),
            Route("/_sim/refunds/{refund_id}/callback", sim_refund_callback, methods=["POST"]),
            Route("/_sim/outage", sim_outage, methods=["POST"]),
        ],
        exception_handlers={
            SandboxError: sandbox_error,
            msgspec.DecodeError: decode_error,
            HTTPException: http_error,
        },
        lifespan=lifespan,
    )
