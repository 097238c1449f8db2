"""Signed callbacks: every status change of a QR is POSTed as JSON to the configured URL.

Signature scheme: each delivery carries

    X-QP-Timestamp: <unix seconds>
    X-QP-Signature: hex(HMAC-SHA256(secret, "<timestamp>." + raw body))

(the secret is `PM_QP_SANDBOX_SECRET`). A receiver verifies over the raw bytes before parsing,
refuses a stale timestamp, and deduplicates on `event_id`. Only HTTP 200 counts as delivered;
anything else is retried `callback_attempts` times in all, after `callback_retry_ms`, doubling.
Duplicates and reordering are faults (see `faults`); deliveries are recorded for the tests.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import deque

import httpx
import msgspec

from pm_sandbox_qp.models import FINAL, Callback, Delivery
from pm_sandbox_qp.settings import Settings
from pm_sandbox_qp.state import Change, utc

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-QP-Timestamp"
SIGNATURE_HEADER = "X-QP-Signature"
_encoder = msgspec.json.Encoder()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    message = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, max_age_s: float = 300) -> bool:
    """Whether `signature` is the sandbox's for this body and the timestamp is fresh."""
    try:
        age = abs(time.time() - int(timestamp))
    except ValueError:
        return False
    return age <= max_age_s and hmac.compare_digest(sign(secret, timestamp, body), signature)


class Notifier:
    """Delivers callbacks in order on one task; a failed one is retried on its own task later."""

    def __init__(self, settings: Settings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.deliveries: deque[Delivery] = deque(maxlen=10_000)
        self._queue: asyncio.Queue[Callback] = asyncio.Queue()
        self._held: dict[str, list[Callback]] = {}
        self._retries: set[asyncio.Task[None]] = set()

    def publish(self, changes: list[Change]) -> None:
        """Queue the callbacks for `changes`, applying each QR's callback faults."""
        if not self.settings.callback_url:
            return
        for change in changes:
            qr = change.qr
            callback = Callback(
                event_id=change.event_id,
                seq=change.seq,
                qr_id=qr.qr_id,
                order=qr.order,
                status=change.status,
                amount=qr.amount,
                currency=qr.currency,
                merchant_id=self.settings.merchant_id,
                transaction_id=qr.transaction_id,
                occurred_at=utc(change.at),
            )
            if qr.faults.out_of_order_callbacks and change.status not in FINAL:
                self._held.setdefault(qr.qr_id, []).append(callback)
                continue
            batch = [callback, *self._held.pop(qr.qr_id, [])]
            for item in batch:
                for _ in range(2 if qr.faults.duplicate_callbacks else 1):
                    self._queue.put_nowait(item)

    async def run(self) -> None:
        while True:
            callback = await self._queue.get()
            if not await self._deliver(callback, 1):
                task = asyncio.create_task(self._retry(callback))
                self._retries.add(task)
                task.add_done_callback(self._retries.discard)

    async def idle(self) -> None:
        """Wait until every queued callback had its first attempt (for tests)."""
        while not self._queue.empty():
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        for task in list(self._retries):
            task.cancel()

    async def _retry(self, callback: Callback) -> None:
        delay = self.settings.callback_retry_ms / 1000
        for attempt in range(2, self.settings.callback_attempts + 1):
            await asyncio.sleep(delay)
            if await self._deliver(callback, attempt):
                return
            delay *= 2
        log.warning("callback %s undelivered after %d attempts", callback.event_id, attempt)

    async def _deliver(self, callback: Callback, attempt: int) -> bool:
        body = _encoder.encode(callback)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self.settings.secret, timestamp, body),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = await self.http.post(
                self.settings.callback_url,
                content=body,
                headers=headers,
                timeout=self.settings.callback_timeout_ms / 1000,
            )
            status = response.status_code
        except (httpx.HTTPError, httpx.InvalidURL) as exc:  # never kill the sender
            error = f"{type(exc).__name__}: {exc}"
        self.deliveries.append(
            Delivery(
                event_id=callback.event_id,
                qr_id=callback.qr_id,
                status=callback.status,
                attempt=attempt,
                http_status=status,
                error=error,
                at=utc(time.time()),
            )
        )
        return status == 200
