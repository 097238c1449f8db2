"""Configuration of pm-adapter-ipps: the fleet's common `PM_*` variables plus `PM_ADAPTER_IPPS_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, ServiceSettings, load_settings

PREFIX = fleet.ADAPTER_IPPS.prefix

Millis = Annotated[int, msgspec.Meta(ge=1)]


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.ADAPTER_IPPS.port
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 4
    """Batches in hand at once: the next jobs are read while earlier ones wait on the PSP (one slow
    payout must not hold up the rest); `PM_STREAM_CONCURRENCY` still bounds the calls in flight."""
    ipps_url: str = "http://127.0.0.1:9201"
    """The IPPS API (`PM_ADAPTER_IPPS_IPPS_URL`); the sandbox listens there by default."""
    ipps_auth_secret: str = ""
    """When set, every request is signed with it (`X-IPPS-Signature`), as IPPS may require."""
    connect_timeout_ms: Millis = 2_000
    """A confirm that cannot connect is still treated as UNKNOWN (it is resolved by polling)."""
    request_timeout_ms: Millis = 10_000
    """Past this a confirm's outcome is UNKNOWN, never FAILED: the PSP may have committed."""
    poll_initial_ms: Millis = 200
    """The first status read after an uncertain confirm waits this long; each next one twice as long…"""
    poll_max_ms: Millis = 2_000
    """…up to this."""
    poll_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Status reads per job delivery before an UNKNOWN result is published and the sweep takes over."""
    sweep_interval_ms: Millis = 5_000
    """How often the StatusPoller looks for attempts still unknown, polling those idle this long."""
    not_executed_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """A confirm IPPS has no transfer for, this long after its last inquiry expired, was never
    executed: the sweep fails it (`NOT_EXECUTED`) rather than asking for ever."""
    http_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    """Connections to IPPS at most (calls in flight beyond it wait for one)."""
    http_pools: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    """…spread over this many connection pools, used in turn (httpx's cost per request grows with the
    connections of its pool)."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 8
    detached_polls_max: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    """PENDING transfers polled in the background at once (0: every job polls before it is acked)."""


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
