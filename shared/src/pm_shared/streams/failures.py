"""What becomes of entries whose handler failed, and of entries past their last delivery.

A failure is judged by `pm_shared.errors.classify`: a `PermanentError` is dead-lettered at once
(with its `reason`); anything else stays pending and is claimed again after the retry delay (or
after the `retry_after_s` of a `RetryLater`, at most the lease), until its last delivery, after
which it is dead-lettered (`max_deliveries`). Every failure is remembered in `<key>:failures`
(first and last time, error) for the dead letter it may become.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from pm_shared import errors, logs
from pm_shared.errors import Verdict
from pm_shared.streams import dlq
from pm_shared.streams.delivery import Delivery
from pm_shared.streams.membership import Membership

log = logging.getLogger(__name__)

Failures = Mapping[str, BaseException]
"""What a handler failed with, by entry id."""


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def settle(
    seat: Membership,
    key: str,
    failed: Sequence[Delivery[Any]],
    failures: Failures,
    payloads: Mapping[str, bytes],
) -> None:
    """Dead-letter the permanent failures and the last deliveries of `failed`; leave the others
    pending, to be claimed again after their delay."""
    verdicts = {d.entry_id: errors.classify(failures[d.entry_id]) for d in failed}
    described = {d.entry_id: describe(failures[d.entry_id]) for d in failed}
    limit = seat.tuning.max_deliveries
    for delivery in failed:
        _log(key, delivery, failures[delivery.entry_id], verdicts[delivery.entry_id], limit)
    records = await dlq.record_failures(seat.redis, key, described)
    permanent = [d for d in failed if verdicts[d.entry_id] is Verdict.PERMANENT]
    retryable = [d for d in failed if verdicts[d.entry_id] is not Verdict.PERMANENT]
    last = [d for d in retryable if d.attempt >= limit]
    again = [d for d in retryable if d.attempt < limit]

    def letter(delivery: Delivery[Any], reason: str) -> dlq.DeadLetter:
        record = records[delivery.entry_id]
        return dlq.DeadLetter(
            delivery.entry_id,
            payloads[delivery.entry_id],
            reason,
            described[delivery.entry_id],
            delivery.attempt,
            record.first_ms,
            record.last_ms,
        )

    letters = [
        letter(d, getattr(failures[d.entry_id], "reason", dlq.REASON_UNRECOVERABLE)) for d in permanent
    ] + [letter(d, dlq.REASON_MAX_DELIVERIES) for d in last]
    if letters:
        await seat.dead_letter(key, letters)
    if again:
        await _retry_later(seat, key, again, failures)


def _log(key: str, delivery: Delivery[Any], exc: BaseException, verdict: Verdict, limit: int) -> None:
    """One line per failure: a bug with its traceback, a transient failure without."""
    traceback = exc if verdict is Verdict.BUG else None
    with logs.bound(intent_id=getattr(delivery.message, "intent_id", None), entry_id=delivery.entry_id):
        if verdict is Verdict.PERMANENT:
            reason = getattr(exc, "reason", dlq.REASON_UNRECOVERABLE)
            log.warning("dead-lettering %s %s (reason %s): %s", key, delivery.entry_id, reason, describe(exc))
        elif delivery.attempt >= limit:
            log.error(
                "dead-lettering %s %s after %d deliveries: %s",
                key,
                delivery.entry_id,
                delivery.attempt,
                describe(exc),
                exc_info=traceback,
            )
        else:
            log.warning(
                "handler failed on %s (delivery %d of %d, will retry): %s",
                key,
                delivery.attempt,
                limit,
                describe(exc),
                exc_info=traceback,
            )


async def _retry_later(
    seat: Membership, key: str, again: Sequence[Delivery[Any]], failures: Failures
) -> None:
    """Make the entries look idle for (lease - delay): the reclaimer takes them again after their
    delay instead of a whole lease. A delay past the lease is the lease (Redis counts idle time
    from the past only)."""
    tuning = seat.tuning
    by_idle: dict[int, list[str]] = {}
    for delivery in again:
        asked = errors.retry_after_s(failures[delivery.entry_id])
        delay_ms = tuning.retry_delay_ms if asked is None else round(asked * 1000)
        by_idle.setdefault(max(0, tuning.lease_ms - delay_ms), []).append(delivery.entry_id)
    for idle_ms, ids in by_idle.items():
        await seat.claim(key, ids, idle_ms=idle_ms)
    seat.labels[key].retry.inc(len(again))


async def exhausted_letters(
    seat: Membership, key: str, entries: Sequence[tuple[str, bytes | None, int]]
) -> list[dlq.DeadLetter]:
    """Letters for entries seen again after their last allowed delivery (`attempt` counts this one)."""
    records = await dlq.load_failures(seat.redis, key, [e[0] for e in entries])
    letters = []
    for entry_id, payload, attempt in entries:
        record = records.get(entry_id)
        if payload is None:
            reason, error = dlq.REASON_PAYLOAD_DELETED, "the entry was trimmed or deleted before it was acked"
        else:
            reason = dlq.REASON_MAX_DELIVERIES
            error = (
                record.error
                if record
                else f"delivered {attempt - 1} times without an ack (the consumer died or stalled)"
            )
        letters.append(
            dlq.DeadLetter(
                entry_id,
                payload,
                reason,
                error,
                attempt - 1,
                record.first_ms if record else None,
                record.last_ms if record else None,
            )
        )
    return letters
