"""The single writer's batch handler: commands in, one ledger request per packed batch, results out.

A batch read from `pm:ledger:commands` is acked only after the ledger answered every command and
the results were published; anything else leaves the whole batch pending for a retry. Retrying is
safe because ids are deterministic: the ledger answers a repeated event with `EXISTS` (see
`outcomes`), and a result's message id is derived from its command's, so the orchestrator sees
one result however often a command is handled.

The consumer may hand over the next batch while one is still being handled (batches in flight):
the checking and packing of one batch and the publishing of another's results then overlap with
the ledger's work, but the ledger requests themselves go out one batch at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from prometheus_client import Histogram
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_ledger_writer.outcomes import outcomes, result
from pm_ledger_writer.packing import YIELD_EVENTS, Batch, Packer
from pm_shared.ledger import BATCH_MAX, Ledger
from pm_shared.ledger.errors import UNAVAILABLE
from pm_shared.messages import LedgerCommand, LedgerResult
from pm_shared.streams import BackPressureError, Delivery, Publisher
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.streams.names import LEDGER_RESULTS

log = logging.getLogger(__name__)

E = TypeVar("E")
R = TypeVar("R")

REQUEST_SECONDS = Histogram(
    "pm_ledger_request_seconds",
    "Time of one ledger request sent by the writer.",
    ["operation"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
REQUEST_EVENTS = Histogram(
    "pm_ledger_request_events",
    "Events per ledger request sent by the writer.",
    ["operation"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 8189),
)


RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0
BACKPRESSURE_RETRY_S = 0.1


class LeaseLostError(RuntimeError):
    """This process is no longer certainly the active writer; the batch is left for the one that is."""


# Worth waiting for: nothing was applied (ledger) or the results can be published again (Redis).
_TRANSIENT: tuple[type[BaseException], ...] = (
    *UNAVAILABLE,
    RedisConnectionError,
    RedisTimeoutError,
    BackPressureError,
)


def _left_pending(
    deliveries: Sequence[Delivery[LedgerCommand]], exc: BaseException
) -> dict[str, BaseException]:
    # Ledger unreachable at stop, results refused, lease lost, a bug: nothing is acked, and running
    # the batch again later is safe (the ledger work is idempotent).
    log.warning("batch of %d commands left pending for a retry: %r", len(deliveries), exc)
    return {d.entry_id: exc for d in deliveries}


class Writer:
    def __init__(
        self,
        ledger: Ledger,
        publisher: Publisher,
        *,
        is_active: Callable[[], bool] = lambda: True,
        batch_max: int = BATCH_MAX,
        stop: asyncio.Event | None = None,
        retry_first_s: float = RETRY_FIRST_S,
    ) -> None:
        """
        Args:
            stop: set when the process stops. With it, a ledger or Redis that cannot be reached is
                waited out in place (backoff from `retry_first_s` to 10 s) for as long as this is the
                active writer; without it, the batch fails at once and the consumer retries it.
        """
        self.ledger = ledger
        self.publisher = publisher
        self.is_active = is_active
        self.batch_max = batch_max
        self.stop = stop
        self.retry_first_s = retry_first_s
        # One batch's requests at a time, back to back: a request's transfers may use the accounts it
        # opens, and a later batch must not slip its requests in between.
        self._turn = asyncio.Lock()

    async def handle_batch(self, deliveries: Sequence[Delivery[LedgerCommand]]) -> dict[str, BaseException]:
        """The consumer's batch handler: no failures, or every delivery failed (all retried together).

        An outage is waited out here rather than failing the batch: a failed batch counts as a
        delivery, and three of them would dead-letter commands whose only fault was arriving while
        PostgreSQL restarted.
        """
        results: list[LedgerResult] | None = None
        backoff = self.retry_first_s
        while True:
            try:
                if results is None:
                    results = await self.write([d.message for d in deliveries])
                # Only the publishing is repeated once the ledger has answered.
                await self.publisher.publish_many(LEDGER_RESULTS, results)
                return {}
            except _TRANSIENT as exc:
                if self.stop is None or self.stop.is_set() or not self.is_active():
                    return _left_pending(deliveries, exc)
                if isinstance(exc, BackPressureError):
                    # Not an outage: the orchestrators are behind on the results. Try again soon,
                    # without the outage backoff (which grew to seconds and became the saga's tail).
                    pause = min(exc.retry_after_s, BACKPRESSURE_RETRY_S)
                    log.debug("results refused (%r); publishing again in %.2fs", exc, pause)
                else:
                    pause = backoff
                    backoff = min(backoff * 2, RETRY_MAX_S)
                    log.warning(
                        "%s unavailable (%r); trying the batch of %d commands again in %.1fs",
                        "Redis" if results is not None else "the ledger",
                        exc,
                        len(deliveries),
                        pause,
                    )
                if await sleep_unless(self.stop, pause):
                    return _left_pending(deliveries, exc)
            except Exception as exc:
                return _left_pending(deliveries, exc)

    async def write(self, commands: Sequence[LedgerCommand]) -> list[LedgerResult]:
        """Apply `commands` to the ledger; one result per command, in their order."""
        refused, batches = await self._pack(commands)
        answers = await self._apply(batches)
        if refused:
            # Each refused command's result goes back to its place among the others'.
            applied = iter(answers)
            answers = [refused[i] if i in refused else next(applied) for i in range(len(commands))]
        assert len(answers) == len(commands)
        return answers

    async def _pack(self, commands: Sequence[LedgerCommand]) -> tuple[dict[int, LedgerResult], list[Batch]]:
        """The requests of the commands that keep the rules, and a result for each one refused."""
        refused: dict[int, LedgerResult] = {}
        packer = Packer(self.batch_max)
        take = packer.take
        events = 0
        for index, command in enumerate(commands):
            events += len(command.transfers) or 1
            if events >= YIELD_EVENTS:
                events = 0
                await asyncio.sleep(0)  # let the ledger request in flight go on
            error = take(command)
            if error is not None:
                # Refused on its own, before packing: it can never fail the commands beside it.
                log.warning(
                    "command %s of intent %s refused: %s", command.message_id, command.intent_id, error
                )
                refused[index] = result(command, ok=False, error=error)
        return refused, packer.finish()

    async def _apply(self, batches: list[Batch]) -> list[LedgerResult]:
        """Send `batches` back to back, in order; each one's results are read while the ledger works
        on the next."""
        answers: list[LedgerResult] = []
        reading: asyncio.Task[list[LedgerResult]] | None = None
        try:
            async with self._turn:
                for batch in batches:
                    # Accounts first: a command's transfers may move money on the accounts it opens.
                    accounts = await self._send(
                        "create_accounts", self.ledger.create_accounts, batch.accounts
                    )
                    transfers = await self._send(
                        "create_transfers", self.ledger.create_transfers, batch.transfers
                    )
                    if reading is not None:
                        answers += await reading
                    reading = asyncio.create_task(outcomes(self.ledger, batch, accounts, transfers))
            if reading is not None:
                answers += await reading
        finally:
            if reading is not None and not reading.done():
                reading.cancel()  # a later request failed: the whole batch is left for a retry
        return answers

    async def _send(
        self, operation: str, request: Callable[[list[E]], Awaitable[list[R]]], events: list[E]
    ) -> list[R]:
        if not events:
            return []
        if not self.is_active():
            # Checked before every request: a writer that may have lost its lease never writes.
            raise LeaseLostError("the writer lease is not held; leaving the batch to the active writer")
        started = time.perf_counter()
        answer = await request(events)
        REQUEST_SECONDS.labels(operation).observe(time.perf_counter() - started)
        REQUEST_EVENTS.labels(operation).observe(len(events))
        return answer
