"""StatusPoller: reads a transfer's status by our idempotency key, with backoff, until it is final.

Used when a confirm's outcome is unknown (timeout, connection error, 5xx, PENDING, UNKNOWN): the PSP
decides, never our timer. One call is bounded (`attempts` reads); what is still unknown after it is
left for a later call (the adapter's sweep, or the job's redelivery).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pm_adapter_ipps.client import IppsClient, Transfer, Unavailable
from pm_shared.psp.adapter.calls import backoff

log = logging.getLogger(__name__)

FINAL = frozenset({"SUCCESS", "FAILED"})


@dataclass(frozen=True)
class Polled:
    transfer: Transfer | None
    """The last transfer the PSP showed (None: it showed none, or never answered)."""
    polls: int
    """Status reads made."""
    absent: bool
    """The PSP answered at least once, and every time it had no transfer under the key (404)."""

    @property
    def final(self) -> bool:
        return self.transfer is not None and self.transfer.status in FINAL


@dataclass(frozen=True)
class StatusPoller:
    client: IppsClient
    initial_s: float
    max_s: float
    attempts: int

    async def resolve(self, key: str, *, wait_first: bool = True) -> Polled:
        """Read the status of the transfer under `key` until final, at most `attempts` times."""
        last: Transfer | None = None
        absent_every_time = True
        answered = False
        async for n in backoff(self.initial_s, self.max_s, self.attempts, wait_first=wait_first):
            try:
                transfer = await self.client.status(key)
            except Unavailable as exc:
                log.info("status of %s unknown (read %d): %s", key, n, exc)
                absent_every_time = False
                continue
            answered = True
            if transfer is None:
                continue
            absent_every_time = False
            last = transfer
            if transfer.status in FINAL:
                return Polled(transfer, n, False)
        return Polled(last, self.attempts, answered and absent_every_time)
