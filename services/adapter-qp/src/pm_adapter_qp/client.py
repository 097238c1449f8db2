"""The QP API as the adapter uses it: register a dynamic QR, read it by id or by order; outcomes classified.

An answer is either a refusal (`Refused`, a 4xx problem: no QR was registered, QP says why), a QR
(QP's word on it), `OrderConflict` (QP has a QR for our order already, registered with another
body: it must be looked up), or `Unavailable` (timeout, connection error, 5xx, 401/403/429, an
unreadable body): QP may or may not have acted, so the caller must not conclude (see
`pm_shared.psp.adapter.calls` and docs/psp.md).
"""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import msgspec

from pm_adapter_qp.metrics import PSP_CALL_SECONDS
from pm_shared.errors import PMError
from pm_shared.psp.adapter.calls import Refused, Unavailable, problem, refusal

__all__ = ["OrderConflict", "QpClient", "Qr", "Refused", "Unavailable"]

PSP = "qp"
NOT_FOUND_CODE = "QR_NOT_FOUND"
FINAL = frozenset({"ACCEPTED", "REJECTED", "EXPIRED"})
# Answers that say nothing about the request itself: bad credentials or a rate limit. Retrying later
# may succeed, so they are no refusal of the registration.
_NOT_A_REFUSAL = frozenset({401, 403, 408, 425, 429})


class Qr(msgspec.Struct, frozen=True, kw_only=True):
    """A registered dynamic QR as QP shows it (the fields the adapter uses)."""

    qr_id: str
    order: str
    payload: str
    """The `qr.nspk.ru` link to show the payer."""
    amount: int
    currency: str
    status: str
    """`NEW`, `IN_PROGRESS`, `ACCEPTED`, `REJECTED` or `EXPIRED` (another word is treated as not final)."""
    expires_at: datetime
    transaction_id: str | None = None

    @property
    def final(self) -> bool:
        return self.status in FINAL


class OrderConflict(PMError):
    """QP has a QR for this order already, registered with another body: look it up by order."""


_qr = msgspec.json.Decoder(Qr)
_encoder = msgspec.json.Encoder()


class QpClient:
    def __init__(self, http: httpx.AsyncClient, secret: str) -> None:
        self.http = http
        self.secret = secret

    async def _send(
        self, operation: str, method: str, path: str, body: dict[str, object] | None = None
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        content = _encoder.encode(body) if body is not None else None
        started = time.perf_counter()
        outcome = "unavailable"
        try:
            response = await self.http.request(method, path, content=content, headers=headers)
        except httpx.HTTPError as exc:  # timeouts, refused and reset connections, protocol errors
            raise Unavailable(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        else:
            code = response.status_code
            if code < 300:
                outcome = "ok"
            elif code == 404:
                outcome = "not_found"
            elif code == 409:
                outcome = "conflict"
            elif code < 500 and code not in _NOT_A_REFUSAL:
                outcome = "refused"
            if code >= 500 or code in _NOT_A_REFUSAL:
                raise Unavailable(f"{method} {path}: HTTP {code} {response.text[:200]}")
            return response
        finally:
            PSP_CALL_SECONDS.labels(PSP, operation, outcome).observe(time.perf_counter() - started)

    @staticmethod
    def _decode(operation: str, response: httpx.Response) -> Qr:
        try:
            return _qr.decode(response.content)
        except msgspec.DecodeError as exc:  # a 2xx we cannot read may still be a registered QR
            raise Unavailable(f"{operation}: unreadable answer: {exc}") from exc

    async def register(self, order: str, amount: int, purpose: str, ttl_s: int) -> Qr:
        """Register a dynamic QR for `order` (our idempotency key: the same order returns the same QR)."""
        body: dict[str, object] = {
            "order": order,
            "amount": amount,
            "currency": "RUB",
            "purpose": purpose,
            "ttl_s": ttl_s,
        }
        response = await self._send("register", "POST", "/v1/qrs", body)
        if response.status_code == 409:
            raise OrderConflict(f"order {order}: {response.text[:200]}")
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.text)
        return self._decode("register", response)

    async def get(self, qr_id: str) -> Qr | None:
        """The QR `qr_id`, or None when QP has none (404)."""
        return await self._read("get", f"/v1/qrs/{qr_id}")

    async def find(self, order: str) -> Qr | None:
        """The QR registered for `order`, or None when QP has none (404)."""
        return await self._read("find", "/v1/qrs?" + str(httpx.QueryParams({"order": order})))

    async def _read(self, operation: str, path: str) -> Qr | None:
        response = await self._send(operation, "GET", path)
        if response.status_code == 404:
            # Only QP's own word that it has no such QR is an answer; a 404 from anything else (a
            # wrong base URL, a proxy) says nothing about the QR.
            found = problem(response.content)
            if found is not None and found.code == NOT_FOUND_CODE:
                return None
            raise Unavailable(f"{operation}: HTTP 404 without {NOT_FOUND_CODE}: {response.text[:200]}")
        if response.status_code >= 400:
            raise Unavailable(f"{operation}: HTTP {response.status_code} {response.text[:200]}")
        return self._decode(operation, response)
