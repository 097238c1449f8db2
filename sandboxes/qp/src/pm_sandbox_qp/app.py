"""The QP sandbox's Starlette app: register dynamic QRs, read their status, and a payer to script.

| route | what |
|---|---|
| `GET /healthz` | `{"status": "ok"}` |
| `POST /v1/qrs` | register a dynamic QR (`RegisterQr`); 201 new, 200 the same order again |
| `GET /v1/qrs/{qr_id}` | the QR and its status (a poll: counts down `stuck`, expires a due QR) |
| `GET /v1/qrs?order=…` | the QR registered for our order (to look up after a timed-out register) |
| `GET /v1/settlements/{day}` | the UTC day's settlement report, `text/csv` (see `settlement`) |
| `POST /v1/sandbox/qrs/{qr_id}/pay` | the payer pays: IN_PROGRESS, then ACCEPTED |
| `POST /v1/sandbox/qrs/{qr_id}/reject` | the payer's bank declines: IN_PROGRESS, then REJECTED |
| `POST /v1/sandbox/qrs/{qr_id}/expire` | the QR's lifetime ends now |
| `GET /v1/sandbox/callbacks?qr_id=…` | every callback delivery attempt so far |
| `GET`, `POST`, `DELETE /v1/sandbox/settlement` | the settlement report's faults: show, add, clear |

`/v1` requests carry `Authorization: Bearer <secret>` (unless `require_auth` is off). Errors are
`application/problem+json` with a stable `code`. Faults: see `faults`; callbacks: see `callbacks`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypedDict

import httpx
import msgspec
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pm_sandbox_qp import faults as fault_specs
from pm_sandbox_qp import settlement as settlement_
from pm_sandbox_qp.callbacks import Notifier
from pm_sandbox_qp.faults import Faults, QrFaults, UnknownFault
from pm_sandbox_qp.models import Payment, Problem, RegisterQr, Status
from pm_sandbox_qp.settings import Settings
from pm_sandbox_qp.state import Clock, NotPayable, OrderConflict, Qr, QrNotFound, Registry
from pm_shared.psp import settlement as report_format

log = logging.getLogger(__name__)

_encoder = msgspec.json.Encoder()
_register = msgspec.json.Decoder(RegisterQr)
_payment = msgspec.json.Decoder(Payment)
_report_faults = msgspec.json.Decoder(settlement_.FaultRequest)


class Unauthorized(Exception):
    pass


class RegistrationRejected(Exception):
    pass


@dataclass
class Sandbox:
    settings: Settings
    registry: Registry
    notifier: Notifier
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    report_faults: settlement_.ReportFaults = field(default_factory=settlement_.ReportFaults)

    def spawn(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


class State(TypedDict):
    sandbox: Sandbox


def sandbox(request: Request) -> Sandbox:
    found: Sandbox = request.state.sandbox
    return found


def _json(value: object, status: int = 200) -> Response:
    return Response(_encoder.encode(value), status_code=status, media_type="application/json")


def problem(status: int, code: str, title: str, detail: str | None = None) -> Response:
    body = Problem(title=title, status=status, code=code, detail=detail)
    return Response(_encoder.encode(body), status_code=status, media_type="application/problem+json")


def _authorize(request: Request, settings: Settings) -> None:
    if not settings.require_auth:
        return
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {settings.secret}".encode()):
        raise Unauthorized


def _faults(request: Request, settings: Settings, purpose: str = "") -> Faults:
    return fault_specs.from_request(
        request.headers.get(fault_specs.HEADER),
        purpose,
        slow_ms=settings.slow_ms,
        hang_ms=settings.hang_ms,
    )


async def _faulty(faults: Faults, act: Callable[[], Response]) -> Response:
    """Run `act` (the commit) inside the request's faults."""
    if faults.status_5xx is not None:
        return problem(faults.status_5xx, "SANDBOX_FAULT", "injected failure", "nothing was done")
    if faults.slow_ms:
        await asyncio.sleep(faults.slow_ms / 1000)
    response = act()
    if faults.hang_ms is not None:
        await asyncio.sleep(faults.hang_ms / 1000)
    if faults.after_commit_5xx:
        return problem(500, "SANDBOX_FAULT", "injected failure", "the request took effect")
    return response


async def healthz(request: Request) -> Response:
    return _json({"status": "ok"})


async def register_qr(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    body = _register.decode(await request.body())
    faults = _faults(request, box.settings, body.purpose)

    def act() -> Response:
        if faults.reject_registration:
            raise RegistrationRejected
        qr, created, changes = box.registry.register(body, faults.qr_faults())
        box.notifier.publish(changes)
        if created and box.settings.auto_pay != "off":
            box.spawn(_auto_pay(box, qr))
        return _json(qr.view(), 201 if created else 200)

    return await _faulty(faults, act)


async def _auto_pay(box: Sandbox, qr: Qr) -> None:
    await asyncio.sleep(box.settings.auto_pay_delay_ms / 1000)
    if qr.status == "NEW":
        outcome: Status = "ACCEPTED" if box.settings.auto_pay == "accept" else "REJECTED"
        with contextlib.suppress(NotPayable):
            box.notifier.publish(box.registry.pay(qr, outcome, QrFaults(), "100000000004"))


async def get_qr(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    faults = _faults(request, box.settings)

    def act() -> Response:
        qr = box.registry.get(request.path_params["qr_id"])
        box.notifier.publish(box.registry.poll(qr))
        return _json(qr.view())

    return await _faulty(faults, act)


async def find_qr(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    order = request.query_params.get("order")
    if not order:
        return problem(422, "INVALID_REQUEST", "invalid request", "query parameter `order` is required")
    faults = _faults(request, box.settings)

    def act() -> Response:
        qr = box.registry.by_order(order)
        box.notifier.publish(box.registry.poll(qr))
        return _json(qr.view())

    return await _faulty(faults, act)


def _payer(outcome: Status) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        box = sandbox(request)
        _authorize(request, box.settings)
        raw = await request.body()
        payment = _payment.decode(raw) if raw.strip() else Payment()
        faults = _faults(request, box.settings)

        def act() -> Response:
            qr = box.registry.get(request.path_params["qr_id"])
            changes = box.registry.pay(qr, outcome, faults.qr_faults(), payment.payer_bank)
            box.notifier.publish(changes)
            return _json(qr.view())

        return await _faulty(faults, act)

    return endpoint


async def expire_qr(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    qr = box.registry.get(request.path_params["qr_id"])
    box.notifier.publish(box.registry.expire(qr))
    return _json(qr.view())


async def list_callbacks(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    qr_id = request.query_params.get("qr_id")
    return _json([d for d in box.notifier.deliveries if qr_id is None or d.qr_id == qr_id])


async def settlement(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    day = report_format.parse_day(request.path_params["day"])
    if day is None:
        return problem(400, "INVALID_DAY", "invalid day", "a settlement day is a UTC date, YYYY-MM-DD")
    faults = _faults(request, box.settings)

    def act() -> Response:
        box.notifier.publish(box.registry.expire_due())  # a QR past its lifetime has ended by now
        text = settlement_.report(box.registry.qrs(), box.report_faults, day)
        return Response(text, media_type=report_format.MEDIA_TYPE)

    return await _faulty(faults, act)


async def settlement_faults(request: Request) -> Response:
    box = sandbox(request)
    _authorize(request, box.settings)
    if request.method == "POST":
        box.report_faults.add(_report_faults.decode(await request.body()), box.registry.clock())
    elif request.method == "DELETE":
        box.report_faults.clear()
    return _json(box.report_faults.view())


async def _sweep(box: Sandbox) -> None:
    while True:
        await asyncio.sleep(box.settings.sweep_ms / 1000)
        box.notifier.publish(box.registry.expire_due())


async def _on_invalid(request: Request, exc: Exception) -> Response:
    return problem(422, "INVALID_REQUEST", "invalid request", str(exc))


async def _on_unknown_fault(request: Request, exc: Exception) -> Response:
    return problem(400, "UNKNOWN_FAULT", "unknown sandbox fault", str(exc))


async def _on_unauthorized(request: Request, exc: Exception) -> Response:
    return problem(401, "UNAUTHORIZED", "missing or wrong bearer token")


async def _on_rejected(request: Request, exc: Exception) -> Response:
    return problem(422, "REGISTRATION_REJECTED", "the acquirer rejected the registration")


async def _on_not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "QR_NOT_FOUND", "no such QR", str(exc))


async def _on_conflict(request: Request, exc: Exception) -> Response:
    detail = f"order {exc} is registered with another body"
    return problem(409, "ORDER_CONFLICT", "order already registered", detail)


async def _on_not_payable(request: Request, exc: Exception) -> Response:
    return problem(409, "QR_NOT_PAYABLE", "the QR cannot be paid now", str(exc))


async def _on_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return problem(exc.status_code, code, str(exc.detail))


def create_app(settings: Settings, clock: Clock = time.time) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        async with httpx.AsyncClient() as http:
            registry = Registry(bank=settings.bank, default_ttl_s=settings.default_ttl_s, clock=clock)
            box = Sandbox(settings=settings, registry=registry, notifier=Notifier(settings, http))
            box.spawn(box.notifier.run())
            box.spawn(_sweep(box))
            try:
                yield {"sandbox": box}
            finally:
                await box.notifier.close()
                for task in list(box.tasks):
                    task.cancel()
                await asyncio.gather(*box.tasks, return_exceptions=True)

    return Starlette(
        routes=[
            Route("/healthz", healthz),
            Route("/v1/qrs", register_qr, methods=["POST"]),
            Route("/v1/qrs", find_qr, methods=["GET"]),
            Route("/v1/qrs/{qr_id}", get_qr, methods=["GET"]),
            Route("/v1/settlements/{day}", settlement, methods=["GET"]),
            Route("/v1/sandbox/qrs/{qr_id}/pay", _payer("ACCEPTED"), methods=["POST"]),
            Route("/v1/sandbox/qrs/{qr_id}/reject", _payer("REJECTED"), methods=["POST"]),
            Route("/v1/sandbox/qrs/{qr_id}/expire", expire_qr, methods=["POST"]),
            Route("/v1/sandbox/callbacks", list_callbacks, methods=["GET"]),
            Route("/v1/sandbox/settlement", settlement_faults, methods=["GET", "POST", "DELETE"]),
        ],
        exception_handlers={
            msgspec.ValidationError: _on_invalid,
            msgspec.DecodeError: _on_invalid,
            UnknownFault: _on_unknown_fault,
            Unauthorized: _on_unauthorized,
            RegistrationRejected: _on_rejected,
            QrNotFound: _on_not_found,
            OrderConflict: _on_conflict,
            NotPayable: _on_not_payable,
            HTTPException: _on_http,
        },
        lifespan=lifespan,
    )
