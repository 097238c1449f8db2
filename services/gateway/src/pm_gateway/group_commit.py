"""Intake's `insert` step for concurrent requests, written together: while a batch's statement is
in PostgreSQL, the requests that reach the step meanwhile queue, and the next statement writes them
all (group commit). An idle gateway writes a lone request at once, as before; a busy one makes one
statement and one commit of many (docs/api.md, "Creating an intent").

Each request still gets its own answer, exactly as `writes.insert` would give it: a new intent, or
the one its (key, Idempotency-Key) made before (found after the batch commits, so a twin in the same
batch is found too). If the batch's statement fails (an FX quote used by two requests at once, say),
each of its requests is written on its own, so the error reaches only the request at fault.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import datetime

from prometheus_client import Histogram

from pm_gateway import queries as q
from pm_gateway.writes import NewIntent, Written, insert, row_json
from pm_shared import messages
from pm_shared.db import DATABASE_ERRORS, Conn, Pool
from pm_shared.streams.names import INTENTS

log = logging.getLogger(__name__)

BATCH = Histogram(
    "pm_gateway_intake_batch_size",
    "New intents written by one intake statement (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)

_Item = tuple[NewIntent, messages.IntentSubmitted, bytes, "asyncio.Future[Written]"]


class GroupCommit:
    """`await writer.insert(intent, message, payload)`: `writes.insert`, batched with the requests
    that arrive while earlier batches are written (at most `in_flight` statements at once, each of
    at most `batch_max` intents)."""

    def __init__(self, pool: Pool, *, in_flight: int = 2, batch_max: int = 100) -> None:
        self.pool = pool
        self.in_flight = in_flight
        self.batch_max = batch_max
        self._queue: list[_Item] = []
        self._running: set[asyncio.Task[None]] = set()

    async def insert(self, intent: NewIntent, message: messages.IntentSubmitted, payload: bytes) -> Written:
        future: asyncio.Future[Written] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieved)
        self._queue.append((intent, message, payload, future))
        self._start()
        # Shielded: a request cancelled meanwhile (its client gone) leaves its batch-mates alone.
        return await asyncio.shield(future)

    def _start(self) -> None:
        while self._queue and len(self._running) < self.in_flight:
            batch, self._queue = self._queue[: self.batch_max], self._queue[self.batch_max :]
            task = asyncio.get_running_loop().create_task(self._write(batch))
            self._running.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._start()

    async def _write(self, batch: list[_Item]) -> None:
        BATCH.observe(len(batch))
        try:
            async with self.pool.acquire() as conn:
                if len(batch) == 1:
                    await _one(conn, batch[0])
                    return
                try:
                    made = await _many(conn, batch)
                except DATABASE_ERRORS as exc:
                    if conn.is_closed():
                        raise
                    log.info("intake batch of %d refused (%r): writing each on its own", len(batch), exc)
                    for item in batch:
                        await _one(conn, item)
                    return
                for item in batch:
                    intent, _, _, future = item
                    created_at = made.get(intent.id)
                    if created_at is not None:
                        _settle(future, Written(intent.id, created_at, intent.hash_bytes))
                    else:
                        await _one(conn, item)  # made before (a replay or a twin): found, not written
        except BaseException as exc:  # no connection, or cancelled: each request still waiting hears why
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise


async def _one(conn: Conn, item: _Item) -> None:
    """`writes.insert` for one request, its answer or its error to that request alone."""
    intent, message, payload, future = item
    try:
        written = await insert(conn, intent, message, payload)
    except Exception as exc:
        if not future.done():
            future.set_exception(exc)
        return
    _settle(future, written)


async def _many(conn: Conn, batch: list[_Item]) -> dict[uuid.UUID, datetime]:
    """Write every intent of `batch` that its (key, Idempotency-Key) has not made yet, each with its
    timeline entry and outbox message, in one statement; the new ones' created_at by intent id."""
    rows = await conn.fetch(
        q.INSERT_INTENTS,
        [row_json(intent) for intent, _, _, _ in batch],
        INTENTS.name,
        [message.message_id for _, message, _, _ in batch],
        [payload for _, _, payload, _ in batch],
    )
    return {row["id"]: row["created_at"] for row in rows}


def _fail(batch: list[_Item], exc: BaseException) -> None:
    """`exc` to every request of `batch` still waiting (cancelled, if this task was)."""
    for *_, future in batch:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()


def _retrieved(future: asyncio.Future[Written]) -> None:
    """Mark an error as seen: the request that waited for it may have gone (its client cancelled)."""
    if not future.cancelled():
        future.exception()


def _settle(future: asyncio.Future[Written], written: Written) -> None:
    if not future.done():
        future.set_result(written)
