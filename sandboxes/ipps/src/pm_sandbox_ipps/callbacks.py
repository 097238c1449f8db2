"""Signed callbacks on a transfer's final status, delivered at least once in the background.

Each callback is a JSON `Callback` POSTed to `callback_url` with `X-IPPS-Signature:
t=<unix>,v1=hex(HMAC-SHA256(callback_secret, f"{t}." + raw body))` (`pm_shared.psp.ipps_signing`).
Only a 2xx counts as delivered; otherwise it is retried up to `callback_attempts` times,
`callback_retry_ms` apart (doubling). Every attempt is recorded in `Store.deliveries`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

import httpx
import msgspec

from pm_sandbox_ipps.models import Callback, Delivery
from pm_sandbox_ipps.settings import Settings
from pm_sandbox_ipps.state import Store, TransferRecord
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
        task = asyncio.create_task(self._deliver_all(sends))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver_all(self, callbacks: list[Callback]) -> None:
        for callback in callbacks:  # one after another, so "out of order" is the order they arrive in
            await self._deliver(callback)

    async def _deliver(self, callback: Callback) -> None:
        body = _encoder.encode(callback)
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
