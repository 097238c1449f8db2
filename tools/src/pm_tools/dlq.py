"""What `pm dlq` does with dead-lettered records: select them, describe them, replay them onto their
original stream with the same payload, purge them."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from redis.asyncio import Redis

from pm_shared.settings import CommonSettings
from pm_shared.streams import BackPressureError, Publisher, dlq, names
from pm_shared.streams.dlq import DlqEntry

_ENTRY_ID = re.compile(r"\d+-\d+")


@dataclass(frozen=True)
class Selection:
    """Which DLQ records a command works on."""

    specs: tuple[names.StreamSpec, ...]
    partitions: int
    ids: tuple[str, ...] = ()
    reason: str | None = None
    limit: int | None = None

    @property
    def keys(self) -> list[str]:
        return dlq.dlq_keys([s.name for s in self.specs], self.partitions)

    def describe(self) -> str:
        return ", ".join(s.name for s in self.specs)


def selection(
    stream: str | None,
    ids: Sequence[str] | None,
    reason: str | None,
    limit: int | None,
    partitions: int,
) -> Selection:
    """Validate the filters (ValueError on a bad one) before anything talks to Redis."""
    specs = tuple(names.ALL_STREAMS) if stream is None else (names.spec(stream),)
    wanted: list[str] = []
    for entry_id in ids or ():
        if not _ENTRY_ID.fullmatch(entry_id):
            raise ValueError(f"invalid entry id {entry_id!r}: expected <ms>-<seq> as `pm dlq list` shows it")
        if entry_id not in wanted:
            wanted.append(entry_id)
    return Selection(specs, partitions, tuple(wanted), reason or None, limit)


async def select(redis: Redis, chosen: Selection) -> tuple[list[DlqEntry], list[str]]:
    """The matching records (oldest first, at most `limit`) and the requested ids that matched nothing."""
    found = await dlq.entries(
        redis,
        chosen.keys,
        ids=chosen.ids,
        reason=chosen.reason,
        # With ids, apply the limit afterwards so an id beyond it is not reported as missing.
        limit=None if chosen.ids else chosen.limit,
    )
    seen = {e.id for e in found}
    missing = [i for i in chosen.ids if i not in seen]
    if chosen.limit is not None:
        found = found[: chosen.limit]
    return found, missing


# --- a record as it is shown ---------------------------------------------------------------------


def payload_json(payload: bytes | None) -> Any:
    """The payload decoded as JSON, or None when there is none or it is not JSON."""
    if payload is None:
        return None
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None


def payload_field(decoded: Any, name: str) -> str | None:
    """A string field of a decoded JSON payload (`intent_id`, `message_id`)."""
    if isinstance(decoded, dict):
        value = decoded.get(name)
        if isinstance(value, str):
            return value
    return None


def escaped(payload: bytes) -> str:
    """Bytes that are not JSON, readable: UTF-8 where valid, escapes for everything else."""
    text = payload.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


class Record(msgspec.Struct, kw_only=True):
    """A DLQ record as `--json` prints it."""

    dlq: str
    id: str
    original_stream: str
    original_id: str
    group: str
    consumer: str
    reason: str
    attempts: int | None
    error: str
    first_failure_at: str
    last_failure_at: str
    intent_id: str | None
    message_id: str | None
    fields: dict[str, str]
    """Every stored field but the payload (including any extra ones)."""
    payload: msgspec.Raw | None
    """The payload as JSON when it is JSON."""
    payload_text: str | None
    """The payload, escaped, when it is not JSON."""


def record(entry: DlqEntry) -> Record:
    decoded = payload_json(entry.payload)
    is_json = entry.payload is not None and decoded is not None
    attempts = entry.fields.get("attempts", "")
    return Record(
        dlq=entry.dlq,
        id=entry.id,
        original_stream=entry.original_stream,
        original_id=entry.fields.get("original_id", ""),
        group=entry.fields.get("group", ""),
        consumer=entry.fields.get("consumer", ""),
        reason=entry.reason,
        attempts=int(attempts) if attempts.isdigit() else None,
        error=entry.fields.get("error", ""),
        first_failure_at=entry.fields.get("first_failure_at", ""),
        last_failure_at=entry.fields.get("last_failure_at", ""),
        intent_id=payload_field(decoded, "intent_id"),
        message_id=payload_field(decoded, "message_id"),
        fields=entry.fields,
        payload=msgspec.Raw(entry.payload) if is_json and entry.payload is not None else None,
        payload_text=escaped(entry.payload) if entry.payload is not None and not is_json else None,
    )


# --- replay and purge ----------------------------------------------------------------------------


@dataclass
class Replayed:
    """What a replay did: each record put back (with its new entry id), failed, or not tried after
    back-pressure stopped it."""

    done: list[tuple[DlqEntry, str]] = field(default_factory=list)
    failed: list[tuple[DlqEntry, str]] = field(default_factory=list)
    not_tried: list[DlqEntry] = field(default_factory=list)
    backpressure: BackPressureError | None = None


async def replay(redis: Redis, config: CommonSettings, chosen: Sequence[DlqEntry]) -> Replayed:
    """Put each record back on its original stream, in order, until back-pressure says stop."""
    publisher = Publisher(
        redis,
        partitions=config.stream_partitions,
        maxlen=config.stream_maxlen,
        threshold=config.backpressure_threshold,
    )
    outcome = Replayed()
    for index, entry in enumerate(chosen):
        try:
            outcome.done.append((entry, await dlq.replay(redis, publisher, entry)))
        except BackPressureError as exc:
            outcome.backpressure = exc
            outcome.not_tried = list(chosen[index:])
            break
        except dlq.ReplayError as exc:
            outcome.failed.append((entry, str(exc)))
    return outcome


async def purge(redis: Redis, chosen: Sequence[DlqEntry]) -> int:
    """Delete the records for good; how many were still there."""
    return await dlq.purge(redis, chosen)
