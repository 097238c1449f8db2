"""The IPPS API as the adapter uses it: inquiry, confirm, status, refund status; every outcome
classified.

An answer is either a refusal (`Refused`, a 4xx problem: nothing was executed, or for a confirm
the PSP names why), a transfer (the PSP's word on it), or `Unavailable` (timeout, connection
error, 5xx, an unreadable body): the PSP may or may not have acted, so the caller must not
conclude (see `pm_shared.psp.adapter.calls` and docs/psp.md).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

import httpx
import msgspec

from pm_adapter_ipps.targets import inquiry_body
from pm_shared.messages import Party
from pm_shared.psp import ipps_signing as signing
from pm_shared.psp.adapter.calls import Refused, Unavailable, refusal

__all__ = ["Inquiry", "IppsClient", "Refund", "Refused", "Transfer", "Unavailable"]

IDEMPOTENCY_HEADER = "Idempotency-Key"


class Inquiry(msgspec.Struct, frozen=True, kw_only=True):
    inquiry_id: str
    amount: int
    fee: int = 0
    expires_at: datetime | None = None
    """After this IPPS refuses to confirm the inquiry."""


class Transfer(msgspec.Struct, frozen=True, kw_only=True):
    transfer_id: str
    idempotency_key: str
    status: Literal["PENDING", "SUCCESS", "FAILED", "UNKNOWN"]
    trans_ref: str | None = None
    failure_code: str | None = None


class Refund(msgspec.Struct, frozen=True, kw_only=True):
    """A transfer (or part of one) the receiving bank sent back, as IPPS's refund status API shows it."""

    refund_id: str
    transfer_id: str
    idempotency_key: str
    """Our key of the transfer sent back."""
    amount: int
    currency: str
    status: str
    """`COMPLETED` when the money is back with us; anything else is not (yet) a refund to credit."""


_inquiry = msgspec.json.Decoder(Inquiry)
_refund = msgspec.json.Decoder(Refund)
_transfer = msgspec.json.Decoder(Transfer)
_encoder = msgspec.json.Encoder()


class IppsClient:
    def __init__(self, http: httpx.AsyncClient | Sequence[httpx.AsyncClient], auth_secret: str = "") -> None:
        # Several connection pools, used in turn: httpcore checks every connection of a pool for
        # expiry on each request (a syscall each), so one pool of 100 busy connections spent most
        # of the adapter's CPU there; a few small pools cost the same latency for a fraction of it.
        self.pools = [http] if isinstance(http, httpx.AsyncClient) else list(http)
        if not self.pools:
            raise ValueError("IppsClient needs at least one httpx client")
        self._turn = itertools.cycle(self.pools)
        self.auth_secret = auth_secret

    @property
    def http(self) -> httpx.AsyncClient:
        return self.pools[0]

    async def _send(
        self,
        method: str,
        path: str,
        body: dict[str, object] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        content = _encoder.encode(body) if body is not None else b""
        sent = {"Content-Type": "application/json", **(headers or {})}
        if self.auth_secret:
            t = int(time.time())
            sent[signing.HEADER] = signing.sign(
                self.auth_secret, t, signing.request_message(t, method, path, content)
            )
        try:
            response = await next(self._turn).request(method, path, content=content or None, headers=sent)
        except httpx.HTTPError as exc:  # timeouts, refused and reset connections, protocol errors
            raise Unavailable(f"{method} {path}: {type(exc).__name__} {exc}") from exc
        if response.status_code >= 500:
            raise Unavailable(f"{method} {path}: HTTP {response.status_code} {response.text[:200]}")
        return response

    async def inquiry(self, amount: int, target: Party) -> Inquiry:
        """Ask IPPS about paying `target`; `targets.InvalidTarget` before any request when it cannot be."""
        response = await self._send("POST", "/v1/inquiry", inquiry_body(amount, target))
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.text)
        try:
            return _inquiry.decode(response.content)
        except msgspec.DecodeError as exc:
            raise Unavailable(f"inquiry: unreadable answer: {exc}") from exc

    async def confirm(self, inquiry_id: str, amount: int, key: str) -> Transfer:
        body: dict[str, object] = {"inquiry_id": inquiry_id, "amount": amount}
        response = await self._send("POST", "/v1/transfers", body, {IDEMPOTENCY_HEADER: key})
        if response.status_code >= 400:
            raise refusal(response.status_code, response.content, response.text)
        try:
            return _transfer.decode(response.content)
        except msgspec.DecodeError as exc:  # a 2xx we cannot read may still be a payment
            raise Unavailable(f"confirm: unreadable answer: {exc}") from exc

    async def status(self, key: str) -> Transfer | None:
        """The transfer made under `key`, or None when the PSP has none (404)."""
        path = "/v1/transfers?" + httpx.QueryParams({"idempotency_key": key}).__str__()
        response = await self._send("GET", path)
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise Unavailable(f"status: HTTP {response.status_code} {response.text[:200]}")
        try:
            return _transfer.decode(response.content)
        except msgspec.DecodeError as exc:
            raise Unavailable(f"status: unreadable answer: {exc}") from exc

    async def refund(self, refund_id: str) -> Refund | None:
        """IPPS's word on a refund, or None when IPPS has no such refund (404). `refund_id` must be a
        path segment as it stands (the caller checks: IPPS's ids are letters, digits, `_` and `-`)."""
        response = await self._send("GET", f"/v1/refunds/{refund_id}")
        if response.status_code == 404:
            return None
        if response.status_code >= 400:
            raise Unavailable(f"refund: HTTP {response.status_code} {response.text[:200]}")
        try:
            return _refund.decode(response.content)
        except msgspec.DecodeError as exc:
            raise Unavailable(f"refund: unreadable answer: {exc}") from exc
