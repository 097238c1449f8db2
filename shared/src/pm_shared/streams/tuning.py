"""How a consumer is tuned: batch size, blocking, concurrency, lease, retries and overlap."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict, Unpack

from pm_shared.settings import CommonSettings


class TuningOptions(TypedDict, total=False):
    """`Tuning`'s fields as keyword arguments (`Consumer(..., block_ms=50)`)."""

    partitions: int
    count: int
    block_ms: int
    concurrency: int
    lease_ms: int
    retry_delay_ms: int
    max_deliveries: int
    claim_interval_ms: int
    batches_in_flight: int
    transient_retry_s: float


@dataclass(frozen=True, kw_only=True)
class Tuning:
    """A consumer's knobs; the defaults are the fleet's (`PM_STREAM_*`, see `CommonSettings`)."""

    partitions: int = 1
    """Partitions of the logical stream; the consumer reads them all."""
    count: int = 100
    """Entries per read."""
    block_ms: int = 2_000
    """How long a read waits for new entries (at most 2 s: a live consumer's idle time stays short)."""
    concurrency: int = 100
    """How many per-message handler calls run at once, over every batch in hand."""
    lease_ms: int = 30_000
    """An entry idle this long in another consumer's hands is reclaimed."""
    retry_delay_ms: int = 1_000
    """A failed entry is claimable again after this (unless its `RetryLater` says otherwise)."""
    max_deliveries: int = 3
    """Deliveries before a failing entry is dead-lettered."""
    claim_interval_ms: int = 5_000
    """Pause between two reclaim passes."""
    batches_in_flight: int = 1
    """Batches in hand at once per partition; a batch handler must then be safe to call concurrently."""
    transient_retry_s: float = 300.0
    """How long entries whose handler met an outage are handled again in place before the failure
    counts as a delivery; 0: at once."""

    def __post_init__(self) -> None:
        if self.batches_in_flight < 1:
            raise ValueError("batches_in_flight is at least 1")
        if not 1 <= self.block_ms <= 2_000:
            raise ValueError("block_ms must be between 1 and 2000")


def from_settings(settings: CommonSettings, **overrides: Unpack[TuningOptions]) -> TuningOptions:
    """The tuning `settings` describe (`PM_STREAM_*`), with `overrides` on top, as keyword arguments."""
    options = TuningOptions(
        partitions=settings.stream_partitions,
        count=settings.stream_batch_size,
        block_ms=settings.stream_block_ms,
        concurrency=settings.stream_concurrency,
        lease_ms=settings.stream_lease_ms,
        retry_delay_ms=settings.stream_retry_delay_ms,
        max_deliveries=settings.stream_max_deliveries,
        claim_interval_ms=settings.stream_claim_interval_ms,
        batches_in_flight=settings.stream_batches_in_flight,
        transient_retry_s=settings.stream_transient_retry_s,
    )
    options.update(overrides)
    return options
