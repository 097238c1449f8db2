"""Configuration of pm-adapter-qp: the fleet's common `PM_*` variables, every adapter's (see
`pm_shared.psp.adapter.settings`) and QP's own, all `PM_ADAPTER_QP_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.psp.adapter.settings import AdapterSettings, Millis
from pm_shared.settings import Port, load_settings

PREFIX = fleet.ADAPTER_QP.prefix


class Settings(AdapterSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.ADAPTER_QP.port
    qp_url: str = "http://127.0.0.1:9202"
    """The QP API (`PM_ADAPTER_QP_QP_URL`); the sandbox listens there by default."""
    qp_secret: str = "qp-sandbox-secret"
    """The bearer token every request carries (the sandbox's default secret)."""
    qr_ttl_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] = 600
    """How long a payer may take to pay a QR. Sent with every registration of an order: changing it
    while QRs are being registered makes a retried registration conflict, which is then looked up."""
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


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
