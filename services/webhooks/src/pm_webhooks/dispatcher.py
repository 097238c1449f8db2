"""The dispatcher: claims due deliveries and attempts them, each in a task of its own.

A claim (`queries.CLAIM_DUE`, `FOR UPDATE SKIP LOCKED`) sets `claimed_until` to the request timeout
plus a margin: two replicas never attempt one delivery at once, and a killed sender's claims lapse
and are taken again. The fan-out wakes the dispatcher when it made deliveries, so a new one is
attempted at once; besides, it polls every `poll_interval_s` (retries falling due, other replicas'
work, lapsed claims).

Isolation, so that a slow or dead endpoint never delays another merchant's deliveries:
- at most `endpoint_concurrency` requests in flight per endpoint: an endpoint at its limit is left
  out of the next claims, and a claim takes no more of an endpoint's deliveries than it has free
  (a slot is held from the claim until the answer is in, not while the attempt is recorded);
- a circuit breaker per endpoint (`breakers`): while open, the endpoint's deliveries are put off to
  its end without an attempt being spent;
- at most `global_concurrency` attempts in flight in the replica.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter as Tally
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram

from pm_shared import logs
from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.streams.concurrency import sleep_unless
from pm_shared.webhooks import signing
from pm_webhooks import payloads, queries
from pm_webhooks.breakers import Breakers
from pm_webhooks.records import Claim, Records
from pm_webhooks.sender import Message, Outcome, Sender
from pm_webhooks.settings import Settings

log = logging.getLogger(__name__)

ATTEMPTS = Counter("pm_webhooks_attempts_total", "Delivery attempts, by outcome.", ["outcome"])
LATENCY = Histogram(
    "pm_webhooks_delivery_latency_seconds",
    "From the event (its state change's production) to its delivery's success.",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60, 300, 1800, 7200, 36000, 86400),
)
BREAKER_OPENS = Counter("pm_webhooks_breaker_opens_total", "Circuit breakers opened (an endpoint put off).")
ERROR_BACKOFF_S = 1.0
"""Pause after a claim failed (PostgreSQL away) before claiming again."""


class Dispatcher:
    def __init__(self, pool: Pool, sender: Sender, cipher: Cipher, settings: Settings) -> None:
        self.pool = pool
        self.sender = sender
        self.cipher = cipher
        self.records = Records(pool, settings)
        self.breakers = Breakers(settings.breaker_failures, settings.breaker_cooldown_s)
        self.endpoint_limit = settings.endpoint_concurrency
        self.global_limit = settings.global_concurrency
        self.claim_batch = settings.claim_batch
        self.claim_s = settings.request_timeout_s + settings.claim_margin_s
        self.poll_interval_s = settings.poll_interval_s
        self.in_flight: Tally[str] = Tally()
        """Requests in flight per endpoint (the per-endpoint semaphore's count)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self._holding: set[int] = set()
        """Claims whose attempt still holds its endpoint's slot (the request not yet over)."""
        self._wake = asyncio.Event()
        self._secrets: dict[tuple[str, bytes], bytes] = {}

    def wake(self) -> None:
        """Claim now (the fan-out made deliveries)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and attempt until `stop`; then let the attempts in flight finish (or be cancelled
        after the request timeout: their claims lapse and another sender takes them)."""
        while not stop.is_set():
            asked = self._free()
            try:
                claimed = await self.claim_once(asked)
            except Exception as exc:
                logs.failure(log, exc, "claiming due deliveries failed")
                await sleep_unless(stop, ERROR_BACKOFF_S)
                continue
            # A full claim: more may be due, claimed again at once while slots are free.
            if claimed < asked or self._free() <= 0:
                await self._wait(stop)
        await self._drain()

    def _free(self) -> int:
        return min(self.claim_batch, self.global_limit - len(self.tasks))

    async def claim_once(self, free: int) -> int:
        """Claim up to `free` deliveries that are due and this replica may attempt now, and start
        their attempts; how many."""
        if free <= 0:
            return 0
        full = [e for e, n in self.in_flight.items() if n >= self.endpoint_limit]
        skipped = sorted({*full, *self.breakers.open_endpoints()})
        busy = [(e, n) for e, n in self.in_flight.items() if n > 0]
        self._wake.clear()
        rows = await self.pool.fetch(
            queries.CLAIM_DUE,
            free,
            skipped,
            [e for e, _ in busy],
            [n for _, n in busy],
            self.endpoint_limit,
            self.claim_s,
        )
        for row in rows:
            self._start(Claim.of(row))
        return len(rows)

    def _start(self, claim: Claim) -> None:
        self.in_flight[claim.endpoint_id] += 1
        self._holding.add(claim.id)
        task = asyncio.create_task(self._attempt(claim), name=f"delivery {claim.id}")
        self.tasks.add(task)
        task.add_done_callback(lambda t: self._done(t, claim))

    def _release(self, claim: Claim) -> None:
        """The attempt's request is over: its endpoint's slot is free (once per claim). The record
        that follows does not hold the slot, so a merchant's server is never left idle while
        PostgreSQL commits."""
        if claim.id not in self._holding:
            return
        self._holding.discard(claim.id)
        endpoint_id = claim.endpoint_id
        at_limit = self.in_flight[endpoint_id] >= self.endpoint_limit
        self.in_flight[endpoint_id] -= 1
        if self.in_flight[endpoint_id] <= 0:
            del self.in_flight[endpoint_id]
        if at_limit:
            # Its deliveries were left out of the claims: claim again now rather than at the next poll.
            self._wake.set()

    def _done(self, task: asyncio.Task[None], claim: Claim) -> None:
        at_limit = len(self.tasks) >= self.global_limit
        self.tasks.discard(task)
        self._release(claim)
        if at_limit:
            self._wake.set()

    async def _wait(self, stop: asyncio.Event) -> None:
        waiters = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(stop.wait())]
        try:
            await asyncio.wait(waiters, timeout=self.poll_interval_s, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()

    async def _drain(self) -> None:
        if not self.tasks:
            return
        log.info("stopping: %d attempts in flight", len(self.tasks))
        done, pending = await asyncio.wait(set(self.tasks), timeout=self.sender.timeout_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _attempt(self, claim: Claim) -> None:
        with logs.bound(entry_id=f"delivery:{claim.id}"):
            try:
                await self._deliver(claim)
            except Exception as exc:
                # The claim lapses and the delivery is attempted again: nothing is lost.
                logs.failure(log, exc, "attempt of delivery %s failed before it was recorded", claim.id)

    async def _deliver(self, claim: Claim) -> None:
        if not claim.endpoint_enabled:
            await self.records.fail(claim, "endpoint_disabled")
            return
        until = self.breakers.open_until(claim.endpoint_id)
        if until is not None:
            await self.pool.execute(
                queries.RELEASE, claim.id, claim.claimed_until, datetime.fromtimestamp(until, UTC)
            )
            return
        at = datetime.now(UTC)
        outcome = await self.sender.attempt(self._message(claim))
        ATTEMPTS.labels(outcome.kind).inc()
        # The breaker first, then the slot: a claim made as the slot frees up already sees a breaker
        # this failure opened.
        opened_until = self._count(claim, outcome)
        self._release(claim)
        recorded = await self.records.record(claim, outcome, at)
        if recorded.status == "DELIVERED":
            LATENCY.observe(
                max(0.0, (datetime.now(UTC) - payloads.event_time(claim.payload)).total_seconds())
            )
        if opened_until is not None:
            await self._postpone(claim, opened_until)

    def _message(self, claim: Claim) -> Message:
        current = self._secret(claim.endpoint_id, claim.secret_encrypted)
        previous = claim.previous_secret_encrypted
        in_force = [current] if previous is None else [current, self._secret(claim.endpoint_id, previous)]
        return Message(claim.url, claim.webhook_id, claim.payload, in_force)

    def _secret(self, endpoint_id: str, blob: bytes) -> bytes:
        key = (endpoint_id, blob)
        secret = self._secrets.get(key)
        if secret is None:
            secret = signing.parse(self.cipher.decrypt(blob, key_id=endpoint_id))
            if len(self._secrets) > 10_000:  # rotated secrets are never asked for again
                self._secrets.clear()
            self._secrets[key] = secret
        return secret

    def _count(self, claim: Claim, outcome: Outcome) -> float | None:
        """The attempt in its endpoint's breaker: a success closes it, a failure (but 410, which
        disables the endpoint) counts; when the failure opened it, until when (Unix seconds)."""
        if outcome.ok:
            self.breakers.succeeded(claim.endpoint_id)
            return None
        if outcome.kind == "gone":
            return None
        return self.breakers.failed(claim.endpoint_id)

    async def _postpone(self, claim: Claim, until: float) -> None:
        """The breaker opened: put the endpoint's due deliveries off to the cool-down's end."""
        BREAKER_OPENS.inc()
        log.warning(
            "endpoint %s failed %d times in a row: put off for %.0f s",
            claim.endpoint_id,
            self.breakers.failures,
            until - time.time(),
        )
        await self.pool.execute(
            queries.POSTPONE_ENDPOINT, claim.endpoint_id, datetime.fromtimestamp(until, UTC)
        )
