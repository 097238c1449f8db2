"""The settings every PSP adapter has, on top of a service's; each adapter adds its PSP's own."""

from __future__ import annotations

from typing import Annotated

import msgspec

from pm_shared.settings import ServiceSettings

Millis = Annotated[int, msgspec.Meta(ge=1)]


class AdapterSettings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 4
    """Batches in hand at once: the next jobs are read while earlier ones wait on the PSP (one slow
    job must not hold up the rest); `PM_STREAM_CONCURRENCY` still bounds the calls in flight."""
    connect_timeout_ms: Millis = 2_000
    """A call that cannot connect is still treated as unknown (it is resolved by reading again)."""
    request_timeout_ms: Millis = 10_000
    """Past this a call's outcome is unknown, never FAILED: the PSP may have acted."""
    poll_initial_ms: Millis = 200
    """After a call whose outcome is unknown the first read waits this long; each next twice as long…"""
    poll_max_ms: Millis = 2_000
    """…up to this."""
    poll_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Reads per job delivery before the job gives the outcome up to the sweep or a redelivery."""
    sweep_interval_ms: Millis = 5_000
    """How often the sweep reads the attempts whose outcome the PSP has not given yet."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 8
