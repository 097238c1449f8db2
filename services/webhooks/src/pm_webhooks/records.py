"""An attempt's record, atomic: its `pm.webhook_attempt` row, the delivery's new state
(DELIVERED, FAILED, or PENDING with its next attempt's time) and what it says of the endpoint
(a success clears `failing_since`; 410, or failing for `disable_after_s`, disables it).

The delivery is only updated while this sender still holds the claim the attempt was made under: a
claim that lapsed (the attempt outlived it) may have been taken by another sender, whose record wins.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
from prometheus_client import Counter

from pm_shared.db import Conn, Pool
from pm_webhooks import queries, retries
from pm_webhooks.sender import Outcome
from pm_webhooks.settings import Settings

log = logging.getLogger(__name__)

ACTOR = "pm-webhooks"
"""Who the event log names for what the sender does on its own."""

ENDPOINTS_DISABLED = Counter(
    "pm_webhooks_endpoints_disabled_total", "Endpoints the sender disabled, by reason.", ["reason"]
)
DELIVERIES_FAILED = Counter(
    "pm_webhooks_deliveries_failed_total",
    "Deliveries that ended FAILED (out of attempts, 410, endpoint disabled), by reason.",
    ["reason"],
)


@dataclass(frozen=True)
class Claim:
    """A delivery claimed for one attempt, with its endpoint."""

    id: int
    webhook_id: str
    endpoint_id: str
    payload: bytes
    attempts: int
    replay_by: str | None
    claimed_until: datetime
    url: str
    endpoint_enabled: bool
    secret_encrypted: bytes
    previous_secret_encrypted: bytes | None

    @classmethod
    def of(cls, row: asyncpg.Record) -> Claim:
        return cls(
            id=row["id"],
            webhook_id=row["webhook_id"],
            endpoint_id=row["endpoint_id"],
            payload=bytes(row["payload"]),
            attempts=row["attempts"],
            replay_by=row["replay_by"],
            claimed_until=row["claimed_until"],
            url=row["url"],
            endpoint_enabled=row["endpoint_status"] == "ENABLED",
            secret_encrypted=bytes(row["secret_encrypted"]),
            previous_secret_encrypted=(
                bytes(row["previous_secret_encrypted"])
                if row["previous_secret_encrypted"] is not None and row["previous_in_force"]
                else None
            ),
        )

    @property
    def trigger(self) -> str:
        if self.replay_by is not None:
            return "replay"
        return "initial" if self.attempts == 0 else "retry"


@dataclass(frozen=True)
class Recorded:
    status: str
    """The delivery's status after the attempt; `lost` when the claim had lapsed (nothing updated)."""
    disabled: bool = False


class Records:
    def __init__(self, pool: Pool, settings: Settings) -> None:
        self.pool = pool
        self.schedule = settings.retry_delays()
        self.jitter = settings.retry_jitter
        self.retry_after_cap_s = settings.retry_after_cap_s
        self.disable_after = timedelta(seconds=settings.disable_after_s)

    def next_attempt(self, attempts: int, outcome: Outcome, now: datetime) -> datetime | None:
        """When to try again after `attempts` attempts, the last one `outcome`; None: FAILED."""
        wait = retries.delay(self.schedule, attempts, self.jitter)
        if wait is None:
            return None
        asked = retries.retry_after(outcome.retry_after, self.retry_after_cap_s)
        return now + timedelta(seconds=max(wait, asked or 0.0))

    async def record(self, claim: Claim, outcome: Outcome, at: datetime) -> Recorded:
        """Record `outcome` of the attempt on `claim` made at `at`."""
        now = datetime.now(UTC)
        attempts = claim.attempts + 1
        if outcome.ok:
            status, retry_at = "DELIVERED", None
        elif outcome.kind == "gone":
            status, retry_at = "FAILED", None
        else:
            retry_at = self.next_attempt(attempts, outcome, now)
            status = "PENDING" if retry_at is not None else "FAILED"
        args = (
            claim.id,
            claim.claimed_until,
            status,
            retry_at,
            outcome.status_code,
            outcome.error,
            claim.trigger,
            at,
            outcome.latency_ms,
            outcome.excerpt,
            claim.replay_by,
        )
        disabled = False
        async with self.pool.acquire() as conn:
            if outcome.ok:  # one statement: atomic by itself, one round trip
                recorded = await conn.fetchval(queries.RECORD_ATTEMPT, *args)
            else:
                async with conn.transaction():
                    recorded = await conn.fetchval(queries.RECORD_ATTEMPT, *args)
                    if recorded is not None:
                        disabled = await self._endpoint_failed(conn, claim, outcome, now)
        if recorded is None:
            log.warning("delivery %s: claim lapsed during its attempt; not recorded", claim.id)
            return Recorded("lost")
        if status == "FAILED":
            DELIVERIES_FAILED.labels("gone" if outcome.kind == "gone" else "exhausted").inc()
        return Recorded(status, disabled)

    async def _endpoint_failed(self, conn: Conn, claim: Claim, outcome: Outcome, now: datetime) -> bool:
        """What a failed attempt says of the endpoint; True when it disabled it."""
        if outcome.kind == "gone":
            return await disable(conn, claim.endpoint_id, claim.id, "gone", "the endpoint answered 410 Gone")
        since: datetime = await conn.fetchval(queries.ENDPOINT_FAILED, claim.endpoint_id)
        if now - since >= self.disable_after:
            detail = f"failing with no success since {since.isoformat()}"
            return await disable(conn, claim.endpoint_id, claim.id, "failing", detail)
        return False

    async def fail(self, claim: Claim, error: str) -> None:
        """Fail a claimed delivery without an attempt (its endpoint is disabled)."""
        await self.pool.execute(queries.FAIL_DELIVERY, claim.id, claim.claimed_until, error)
        DELIVERIES_FAILED.labels("endpoint_disabled").inc()


async def disable(conn: Conn, endpoint_id: str, delivery_id: int | None, reason: str, detail: str) -> bool:
    """Disable an endpoint, log it, and fail its deliveries still waiting; False when it already was."""
    if await conn.fetchval(queries.DISABLE_ENDPOINT, endpoint_id, f"{reason}: {detail}") is None:
        return False
    await conn.execute(
        queries.LOG_ENDPOINT_EVENT, endpoint_id, delivery_id, "disabled", ACTOR, f"{reason}: {detail}"
    )
    failed = await conn.execute(queries.FAIL_PENDING_OF_ENDPOINT, endpoint_id, "endpoint_disabled")
    ENDPOINTS_DISABLED.labels(reason).inc()
    log.warning("endpoint %s disabled (%s); %s", endpoint_id, detail, failed)
    return True
