"""Configuration of pm-adapter-qp: the fleet's common `PM_*` variables plus `PM_ADAPTER_QP_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, ServiceSettings, load_settings

PREFIX = fleet.ADAPTER_QP.prefix

Millis = Annotated[int, msgspec.Meta(ge=1)]


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.ADAPTER_QP.port
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 4
    """Batches in hand at once: the next jobs are read while earlier ones wait on the PSP (one slow
    payout must not hold up the rest); `PM_STREAM_CONCURRENCY` still bounds the calls in flight."""
    qp_url: str = "http://127.0.0.1:9202"
    """The QP API (`PM_ADAPTER_QP_QP_URL`); the sandbox listens there by default."""
    qp_secret: str = "qp-sandbox-secret"
    """The bearer token every request carries (the sandbox's default secret)."""
    qr_ttl_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] = 600
    """How long a payer may take to pay a QR. Sent with every registration of an order: changing it
    while QRs are being registered makes a retried registration conflict, which is then looked up."""
    connect_timeout_ms: Millis = 2_000
    request_timeout_ms: Millis = 10_000
    """Past this a registration's outcome is unknown, never FAILED: the QR is looked up by order."""
    poll_initial_ms: Millis = 200
    """After an uncertain registration the first lookup by order waits this long; each next twice…"""
    poll_max_ms: Millis = 2_000
    """…up to this."""
    poll_attempts: Annotated[int, msgspec.Meta(ge=1, le=100)] = 6
    """Lookups per job delivery before the job is left to be retried (its registration still unknown)."""
    sweep_interval_ms: Millis = 1_000
    """How often the sweep reads the QRs still waiting for their payer (payers pay at any moment)."""
    sweep_max_idle_ms: Millis = 5_000
    """A QR read again and again unpaid is read less often: each read doubles its wait, up to this."""
    sweep_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    """QRs read per sweep, oldest read first."""
    sweep_concurrency: Annotated[int, msgspec.Meta(ge=1, le=200)] = 16
    """QP reads in flight at once during a sweep."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=1)] = 8


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
