"""Configuration of pm-reconciler: the fleet's common `PM_*` variables plus `PM_RECONCILER_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, ServiceSettings, SettingsError, load_settings

PREFIX = fleet.RECONCILER.prefix


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.RECONCILER.port
    pool_max_size: Annotated[int, msgspec.Meta(ge=2, le=100)] = 4
    void_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 10.0
    """A FAILED intent's void is sent with its state change: an authorization still open this soon
    after is looked at again later, not reported."""
    alert_cap: Annotated[int, msgspec.Meta(ge=1)] = 200
    """A run that would open more alerts than this opens none and raises one `alert_cap` alert."""
    recheck_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """How often the subjects of unresolved alerts are checked again (a repaired one resolves)."""
    sweep_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """How often the scheduler looks for a sweep that is due."""
    sweep_window_s: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 3_600
    """The windowed sweeps (verify, orphans) cover one window each, run once it has ended."""
    sweep_delay_s: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    """A window is swept this long after it ends (intents still settling are not yet terminal)."""
    sweep_lookback_windows: Annotated[int, msgspec.Meta(ge=1, le=24 * 31)] = 24
    """How many past windows the scheduler makes sure were swept (after a downtime)."""
    sweep_page: Annotated[int, msgspec.Meta(ge=1, le=100_000)] = 8_000
    """Intents (or transfers) per page; each page's checkpoint commits with its alerts."""
    lease_ms: Annotated[int, msgspec.Meta(ge=1_000)] = 30_000
    """A sweep's holder renews this lease with every page; another replica takes it only once it ran out."""
    ipps_url: str = ""
    """The IPPS API (its settlement reports); empty: the settlement sweep skips IPPS."""
    ipps_secret: str = ""
    """The IPPS request-signing secret (as `PM_ADAPTER_IPPS_IPPS_AUTH_SECRET`); empty: unsigned."""
    qp_url: str = ""
    """The QP API (its settlement reports); empty: the settlement sweep skips QP."""
    qp_secret: str = ""
    """QP's bearer token (as `PM_ADAPTER_QP_QP_SECRET`)."""
    reports_dir: str = ""
    """Where daily and weekly reports are written (CSV + HTML); empty: none are written."""

    def ledger(self) -> str:
        """The ledger URL (read-only here): `PM_LEDGER_URL`, else the embedded engine in the database."""
        return self.ledger_url or "embedded+" + self.database_url


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    settings = load_settings(Settings, PREFIX, environ)
    if 86_400 % settings.sweep_window_s:
        # A window must not cross midnight: an orphan's alert is kept under its UTC day.
        raise SettingsError(f"PM_{PREFIX}SWEEP_WINDOW_S={settings.sweep_window_s} must divide a day (86400)")
    return settings
