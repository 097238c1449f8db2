"""OrderPoller: looks up the QR registered for our order, with backoff, after an uncertain registration.

A registration that timed out, failed with a 5xx or conflicted may or may not have made a QR:
only QP can say, so it is asked by order (`GET /v1/qrs?order=`). One call is bounded (`attempts`
reads); what is still unknown after it is left to the job's next delivery.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pm_adapter_qp.client import QpClient, Qr, Unavailable
from pm_shared.psp.adapter.calls import backoff

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Found:
    qr: Qr | None
    """The QR QP showed for the order (None: it showed none, or never answered)."""
    polls: int
    """Lookups made."""
    absent: bool
    """QP answered every lookup, each time without a QR for the order (404)."""


@dataclass(frozen=True)
class OrderPoller:
    client: QpClient
    initial_s: float
    max_s: float
    attempts: int

    async def find(self, order: str, *, wait_first: bool = True) -> Found:
        """Look the order's QR up until QP shows one, at most `attempts` times."""
        answered_every_time = True
        async for n in backoff(self.initial_s, self.max_s, self.attempts, wait_first=wait_first):
            try:
                qr = await self.client.find(order)
            except Unavailable as exc:
                log.info("QR of order %s unknown (lookup %d): %s", order, n, exc)
                answered_every_time = False
                continue
            if qr is not None:
                return Found(qr, n, False)
        return Found(None, self.attempts, answered_every_time)
