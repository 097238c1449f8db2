"""Configuration of pm-adapter-ipps: the fleet's common `PM_*` variables, every adapter's (see
`pm_shared.psp.adapter.settings`) and IPPS's own, all `PM_ADAPTER_IPPS_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.psp.adapter.settings import AdapterSettings, Millis
from pm_shared.settings import Port, load_settings

PREFIX = fleet.ADAPTER_IPPS.prefix


class Settings(AdapterSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.ADAPTER_IPPS.port
    ipps_url: str = "http://127.0.0.1:9201"
    """The IPPS API (`PM_ADAPTER_IPPS_IPPS_URL`); the sandbox listens there by default."""
    ipps_auth_secret: str = ""
    """When set, every request is signed with it (`X-IPPS-Signature`), as IPPS may require."""
    poll_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 8
    """Status reads per job delivery before an UNKNOWN result is published and the sweep takes over."""
    sweep_interval_ms: Millis = 5_000
    """How often the sweep looks for attempts still unknown, reading those idle this long."""
    not_executed_after_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    """A confirm IPPS has no transfer for, this long after its last inquiry expired, was never
    executed: the sweep fails it (`NOT_EXECUTED`) rather than asking for ever."""
    http_connections: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    """Connections to IPPS at most (calls in flight beyond it wait for one)."""
    http_pools: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    """…spread over this many connection pools, used in turn (httpx's cost per request grows with the
    connections of its pool)."""
    detached_polls_max: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    """PENDING transfers polled in the background at once (0: every job polls before it is acked)."""


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
