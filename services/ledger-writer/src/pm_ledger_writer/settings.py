"""Configuration of pm-ledger-writer: the fleet's common `PM_*` variables plus `PM_LEDGER_WRITER_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_ledger_writer.liquidity import parse_thresholds
from pm_shared import fleet
from pm_shared.ledger.api import BATCH_MAX
from pm_shared.ledger.urls import LedgerUrlError, parse
from pm_shared.settings import Port, ServiceSettings, SettingsError, load_settings

PREFIX = fleet.LEDGER_WRITER.prefix


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.LEDGER_WRITER.port
    # The writer's throughput comes from large ledger requests: read up to a full request of commands
    # at once (BLOCK still returns as soon as one is there, so a quiet stream costs no latency).
    stream_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = BATCH_MAX
    # While one batch waits on PostgreSQL and on Redis, the next is read, decoded and packed. The
    # ledger applies requests one at a time, in order, whatever this is.
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    lease_ms: Annotated[int, msgspec.Meta(ge=300)] = 10_000
    """How long the active writer's Redis lease lives without renewal; a standby takes over within it."""
    lease_key: str = "pm:ledger-writer:lease"
    """One lease per ledger: writers of the same ledger must share it."""
    migrate_on_start: bool = False
    """Embedded ledger only: apply pending migrations (schema `ledger`) before opening it. Off by
    default: migrations are a deployment step (`pm migrate`, which `pm up` runs), not a side effect."""

    fx_liquidity_low: str = "THB:1000000,USD:30000,RUB:3000000"
    """Per currency, in minor units: FX liquidity below it raises PMFxLiquidityLow (see
    pm_ledger_writer.liquidity)."""
    fx_liquidity_interval_s: Annotated[float, msgspec.Meta(ge=1, le=3_600)] = 15.0
    """How often the active writer reads the liquidity accounts for the gauge."""

    def ledger(self) -> str:
        """The ledger URL: `PM_LEDGER_URL`, else the embedded engine in the fleet's database."""
        return self.ledger_url or "embedded+" + self.database_url


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    settings = load_settings(Settings, PREFIX, environ)
    try:
        parse(settings.ledger())
    except LedgerUrlError as exc:
        # A configuration error (exit 2 naming the variable), not a crash after start.
        raise SettingsError(f"PM_LEDGER_URL: {exc}") from None
    try:
        parse_thresholds(settings.fx_liquidity_low)
    except ValueError as exc:
        raise SettingsError(f"PM_{PREFIX}FX_LIQUIDITY_LOW: {exc}") from None
    return settings
