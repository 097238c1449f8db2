"""Dead-letter queues: the atomic move out of a stream, and listing, replay and purge for operators.

A DLQ record keeps the original payload untouched (so its message id, the idempotency key,
survives a replay) next to where it came from and why it failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec
from redis.asyncio import Redis

from pm_shared.streams import metrics
from pm_shared.streams.connection import as_str
from pm_shared.streams.errors import StreamMissingError
from pm_shared.streams.names import dlq_key, failures_key, parse_key, stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD, Publisher

# Why an entry was dead-lettered.
REASON_MAX_DELIVERIES = "max_deliveries"
REASON_DECODE_ERROR = "decode_error"
REASON_PAYLOAD_DELETED = "payload_deleted"
REASON_UNRECOVERABLE = "unrecoverable"
REASON_UNHANDLED = "unhandled"


class Failure(msgspec.Struct, kw_only=True):
    """What is remembered about an entry that failed and is still pending (in `<key>:failures`)."""

    first_ms: int
    last_ms: int
    error: str
    count: int = 1


_failure_decoder = msgspec.json.Decoder(Failure)
_encoder = msgspec.json.Encoder()


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def record_failures(redis: Redis, key: str, errors: dict[str, str]) -> dict[str, Failure]:
    """Add one failure to each entry's record; returns the updated records."""
    name, partition = parse_key(key)
    fkey = failures_key(name, partition)
    ids = list(errors)
    previous = await redis.hmget(fkey, ids)
    at = now_ms()
    updated: dict[str, Failure] = {}
    for entry_id, raw in zip(ids, previous, strict=True):
        old = _failure_decoder.decode(raw) if raw else None
        updated[entry_id] = Failure(
            first_ms=old.first_ms if old else at,
            last_ms=at,
            error=errors[entry_id],
            count=(old.count + 1) if old else 1,
        )
    await redis.hset(fkey, mapping={i: _encoder.encode(f) for i, f in updated.items()})
    return updated


async def load_failures(redis: Redis, key: str, ids: Sequence[str]) -> dict[str, Failure]:
    name, partition = parse_key(key)
    raw = await redis.hmget(failures_key(name, partition), list(ids))
    return {i: _failure_decoder.decode(r) for i, r in zip(ids, raw, strict=True) if r}


@dataclass(frozen=True)
class DeadLetter:
    """One entry on its way to the DLQ."""

    entry_id: str
    payload: bytes | None
    reason: str
    error: str
    attempts: int
    first_failure_ms: int | None = None
    last_failure_ms: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


async def move(redis: Redis, key: str, group: str, consumer: str, letters: Sequence[DeadLetter]) -> None:
    """Copy `letters` to the DLQ and ack them in one MULTI, so an entry is never in both or neither."""
    if not letters:
        return
    name, partition = parse_key(key)
    at = now_ms()
    async with redis.pipeline(transaction=True) as pipe:
        for letter in letters:
            fields: dict[str, str | bytes] = {
                "original_stream": key,
                "original_id": letter.entry_id,
                "group": group,
                "consumer": consumer,
                "reason": letter.reason,
                "error": letter.error[:2000],
                "attempts": str(letter.attempts),
                "first_failure_at": iso(letter.first_failure_ms or at),
                "last_failure_at": iso(letter.last_failure_ms or at),
                **letter.extra,
            }
            if letter.payload is not None:
                fields["m"] = letter.payload
            # No MAXLEN: a dead letter is kept until an operator replays or purges it.
            pipe.xadd(dlq_key(name, partition), fields)  # type: ignore[arg-type]
        pipe.xack(key, group, *[letter.entry_id for letter in letters])
        pipe.hdel(failures_key(name, partition), *[letter.entry_id for letter in letters])
        await pipe.execute()
    for letter in letters:
        metrics.DLQ.labels(key, group, letter.reason).inc()
        metrics.MESSAGES.labels(key, group, "dlq").inc()


@dataclass(frozen=True)
class DlqEntry:
    """A record in a DLQ, as `pm dlq` shows it."""

    dlq: str
    id: str
    fields: dict[str, str]
    payload: bytes | None

    @property
    def reason(self) -> str:
        return self.fields.get("reason", "")

    @property
    def original_stream(self) -> str:
        return self.fields.get("original_stream", "")


def _entry(dlq: str, entry_id: bytes, raw: dict[bytes, bytes]) -> DlqEntry:
    payload = raw.get(PAYLOAD_FIELD)
    text = {k.decode(): v.decode(errors="replace") for k, v in raw.items() if k != PAYLOAD_FIELD}
    return DlqEntry(dlq=dlq, id=entry_id.decode(), fields=text, payload=payload)


def dlq_keys(names: Sequence[str], partitions: int) -> list[str]:
    return [dlq_key(name, p) for name in names for p in range(partitions)]


async def entries(
    redis: Redis,
    keys: Sequence[str],
    *,
    ids: Sequence[str] = (),
    reason: str | None = None,
    limit: int | None = None,
) -> list[DlqEntry]:
    """DLQ records of `keys`, oldest first, filtered by entry ids and reason."""
    found: list[DlqEntry] = []
    for key in keys:
        raw: list[Any] = []
        if ids:
            for entry_id in ids:
                raw.extend(await redis.xrange(key, min=entry_id, max=entry_id) or [])
        else:
            raw = await redis.xrange(key, min="-", max="+") or []
        for entry_id, fields in raw:
            entry = _entry(key, entry_id, fields)
            if reason is None or entry.reason == reason:
                found.append(entry)
    found.sort(key=lambda e: tuple(int(p) for p in e.id.split("-")))
    return found[:limit] if limit is not None else found


# XADD and XDEL in one script: when the target stream is missing, the record stays in the DLQ.
_REPLAY_SCRIPT = """
local id = redis.call('XADD', KEYS[1], 'NOMKSTREAM', 'MAXLEN', '~', ARGV[1], '*',
                      'm', ARGV[2], 'replayed_from', ARGV[3])
if not id then return false end
redis.call('XDEL', KEYS[2], ARGV[3])
return id
"""


class ReplayError(Exception):
    """A DLQ record cannot be put back (its payload is gone, or its origin is unknown)."""


async def replay(redis: Redis, publisher: Publisher, entry: DlqEntry) -> str:
    """Put a record's original payload back on its original stream and delete it from the DLQ.

    The payload is re-added unchanged, so the message keeps its idempotency key; the move is one
    script (the stream and its DLQ share a hash slot). Back-pressure applies as to any publish:
    BackPressureError leaves the record where it is. Returns the new stream entry id.
    """
    if entry.payload is None:
        raise ReplayError(f"{entry.dlq} {entry.id}: the payload was deleted before it was dead-lettered")
    name, partition = parse_key(entry.dlq)
    target = entry.original_stream or stream_key(name, partition)
    if parse_key(target) != (name, partition):
        raise ReplayError(f"{entry.dlq} {entry.id}: origin {target!r} is not this DLQ's stream")
    try:
        await publisher.admit(target)
    except StreamMissingError as exc:
        raise ReplayError(f"{entry.dlq} {entry.id}: {exc}") from exc
    new_id = await redis.eval(
        _REPLAY_SCRIPT, 2, target, entry.dlq, str(publisher.maxlen), entry.payload, entry.id
    )
    if not new_id:
        raise ReplayError(f"{entry.dlq} {entry.id}: {StreamMissingError(target)}")
    return as_str(new_id)


async def purge(redis: Redis, chosen: Sequence[DlqEntry]) -> int:
    """Delete DLQ records; returns how many were deleted."""
    deleted = 0
    for entry in chosen:
        deleted += int(await redis.xdel(entry.dlq, entry.id))
    return deleted
