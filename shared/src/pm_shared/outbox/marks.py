"""Marking published outbox rows in batches, off the hot path."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

from pm_shared.db import Pool
from pm_shared.outbox import queries as q

log = logging.getLogger(__name__)

MARK_EVERY_S = 0.05


@dataclass
class Marks:
    """Marks published outbox rows in batches (one UPDATE per `MARK_EVERY_S` at most), so publishing
    after a commit costs no database round trip of its own.

    A row left unmarked by a crash is only published once more by the relay: consumers deduplicate
    on the message id, so that is harmless. `run` until the stop event; it flushes what is left.
    """

    pool: Pool
    _pending: list[str] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def add(self, message_id: str) -> None:
        self._pending.append(message_id)
        self._wake.set()

    def extend(self, message_ids: Iterable[str]) -> None:
        self._pending.extend(message_ids)
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
                    await conn.execute(q.MARK_PUBLISHED_BY_MESSAGE_ID, batch)
            except Exception as exc:
                log.warning(
                    "%d outbox rows not marked published (%r); the relay will see them", len(batch), exc
                )
            await asyncio.sleep(MARK_EVERY_S)
