"""Signed callbacks on a transfer's final status and on each refund of it, delivered at least once in
the background.

Each callback is a JSON `Callback` (or `RefundCallback`, event `transfer.returned`) POSTed to
`callback_url` with `X-IPPS-Signature: t=<unix>,v1=hex(HMAC-SHA256(callback_secret, f"{t}." + raw
body))` (`pm_shared.psp.ipps_signing`).
Only a 2xx counts as delivered; otherwise it is retried up to `callback_attempts` times,
`callback_retry_ms` apart (doubling). Every attempt is recorded in `Store.deliveries`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from pm_sandbox_ipps.models import Callback, Delivery, RefundCallback
from pm_sandbox_ipps.settings import Settings
from pm_sandbox_ipps.state import RefundRecord, Store, TransferRecord, event_id
from pm_shared.psp import ipps_signing as signing

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()


@dataclass
class Notifier:
    settings: Settings
    store: Store
    http: httpx.AsyncClient
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def final(self, record: TransferRecord) -> None:
        """Schedule the callbacks for `record`'s final status (as its faults shape them)."""
        if not self.settings.callback_url:
            return
        final = Callback(
            event="transfer.succeeded" if record.status == "SUCCESS" else "transfer.failed",
            sequence=2,
            transfer=record.view(),
        )
        callbacks = [final]
        if record.faults.out_of_order_callbacks:
            stale = msgspec.structs.replace(record.view(), status="PENDING", trans_ref=None)
            callbacks.append(Callback(event="transfer.pending", sequence=1, transfer=stale))
        sends = [c for c in callbacks for _ in range(record.faults.callback_copies)]
        self._spawn(self._deliver_all(sends))

    def refund(self, refund: RefundRecord, *, new_event: bool = False, delay_s: float = 0.0) -> str:
        """Schedule the callback of `refund`, `delay_s` from now; returns its event id. `new_event`: the
        PSP notifies the refund again as a new event (a new id), rather than redelivering the last."""
        if new_event:
            refund.event_id = event_id()
        callback = RefundCallback(
            event="transfer.returned",
            event_id=refund.event_id,
            sequence=refund.sequence,
            transfer=refund.transfer.view(),
            refund=refund.view(),
        )
        if self.settings.callback_url:
            self._spawn(self._deliver_late(callback, delay_s))
        return callback.event_id

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver_late(self, callback: RefundCallback, delay_s: float) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        await self._deliver(callback)

    async def _deliver_all(self, callbacks: list[Callback]) -> None:
        for callback in callbacks:  # one after another, so "out of order" is the order they arrive in
            await self._deliver(callback)

    async def _deliver(self, callback: Callback | RefundCallback) -> None:
        body = _encoder.encode(callback)
        refund = callback.refund if isinstance(callback, RefundCallback) else None
        delay = self.settings.callback_retry_ms / 1000
        for attempt in range(1, self.settings.callback_attempts + 1):
            now = int(time.time())
            headers = {
                "Content-Type": "application/json",
                signing.HEADER: signing.sign(
                    self.settings.callback_secret, now, signing.callback_message(now, body)
                ),
            }
            status: int | None = None
            error: str | None = None
            try:
                response = await self.http.post(self.settings.callback_url, content=body, headers=headers)
                status = response.status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            self.store.deliveries.append(
                Delivery(
                    transfer_id=callback.transfer.transfer_id,
                    event=callback.event,
                    sequence=callback.sequence,
                    attempt=attempt,
                    status_code=status,
                    error=error,
                    event_id=callback.event_id if isinstance(callback, RefundCallback) else None,
                    refund_id=refund.refund_id if refund else None,
                )
            )
            if status is not None and 200 <= status < 300:
                return
            log.warning(
                "callback %s for %s not delivered (%s)",
                callback.event,
                callback.transfer.transfer_id,
                error or status,
            )
            if attempt < self.settings.callback_attempts:
                await asyncio.sleep(delay)
                delay *= 2

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
