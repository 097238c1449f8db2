"""Configuration of the QP sandbox: `PM_QP_SANDBOX_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, load_settings

PREFIX = fleet.QP_SANDBOX.prefix

Ms = Annotated[int, msgspec.Meta(ge=0)]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = fleet.QP_SANDBOX.port
    secret: str = "qp-sandbox-secret"
    """Signs callbacks (HMAC-SHA256) and is the bearer token every `/v1` request must carry."""
    require_auth: bool = True
    callback_url: str = ""
    """Where status changes are POSTed; empty: no callbacks."""
    bank: str = "100000000111"
    """The NSPK member id in the links (Sber's)."""
    merchant_id: str = "MA0000000552"
    default_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 72 * 3600
    auto_pay: Literal["off", "accept", "reject"] = "off"
    """Make a payer answer every new QR by itself, `auto_pay_delay_ms` after registration."""
    auto_pay_delay_ms: Ms = 500
    slow_ms: Ms = 1_500
    """How long the `slow` fault delays an answer."""
    hang_ms: Ms = 30_000
    """How long the `timeout` fault holds an answer (after committing)."""
    callback_attempts: Annotated[int, msgspec.Meta(ge=1)] = 5
    callback_retry_ms: Ms = 200
    """The first retry's delay; each next one doubles."""
    callback_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 5_000
    sweep_ms: Annotated[int, msgspec.Meta(ge=10)] = 100
    """How often due QRs are expired (and their callbacks sent)."""


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
