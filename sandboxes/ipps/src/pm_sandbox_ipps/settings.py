"""Configuration of the IPPS sandbox, from `PM_IPPS_SANDBOX_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, load_settings

PREFIX = fleet.IPPS_SANDBOX.prefix

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = fleet.IPPS_SANDBOX.port
    callback_url: str = ""
    """Where final transfer states are POSTed; empty: no callbacks."""
    callback_secret: str = "ipps-sandbox-callback-secret"
    """HMAC-SHA256 key of the `X-IPPS-Signature` header on callbacks."""
    auth_secret: str = ""
    """When set, every /v1 request must carry a valid `X-IPPS-Signature` made with it."""
    auth_max_skew_s: NonNegative = 300
    latency_ms: NonNegative = 0
    """Added to every /v1 answer (the simulated network + bank latency)."""
    inquiry_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 300
    pending_ms: NonNegative = 200
    """How long a PENDING transfer (fault `pending`) takes to settle."""
    hang_s: NonNegative = 30
    """How long fault `timeout` holds the answer after committing: past any sane client timeout."""
    callback_attempts: Annotated[int, msgspec.Meta(ge=1)] = 3
    callback_retry_ms: NonNegative = 500
    callback_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 2_000
    log_level: str = "INFO"


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
