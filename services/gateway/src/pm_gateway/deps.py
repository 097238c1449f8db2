"""What the request handlers use, built once per process in the app's lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from redis.asyncio import Redis

from pm_gateway import queries as q
from pm_gateway.auth import Authenticator
from pm_gateway.events import EventWaiters
from pm_gateway.settings import Settings
from pm_shared.db import Pool
from pm_shared.ledger import Ledger
from pm_shared.streams import Publisher

log = logging.getLogger(__name__)

MARK_EVERY_S = 0.05


@dataclass
class OutboxMarks:
    """Marks published outbox rows in batches, off the request path (one UPDATE per 50 ms at most).

    A row left unmarked by a crash is only published once more by the relay: consumers deduplicate
    on the message id, so that is harmless.
    """

    pool: Pool
    _pending: list[str] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message_id: str) -> None:
        self._pending.append(message_id)
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set() or self._pending:
            if not self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                self._wake.clear()
                continue
            batch, self._pending = self._pending, []
            try:
                async with self.pool.acquire() as conn:
                    await conn.execute(q.MARK_PUBLISHED, batch)
            except Exception as exc:
                log.warning(
                    "%d outbox rows not marked published (%r); the relay will see them", len(batch), exc
                )
            await asyncio.sleep(MARK_EVERY_S)


@dataclass
class Deps:
    settings: Settings
    pool: Pool
    redis: Redis
    publisher: Publisher
    auth: Authenticator
    waiters: EventWaiters
    ledger: Ledger
    marks: OutboxMarks
