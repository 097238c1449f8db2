"""Configuration of pm-orchestrator: the fleet's common `PM_*` variables plus `PM_ORCHESTRATOR_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, ServiceSettings, load_settings

PREFIX = fleet.ORCHESTRATOR.prefix


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.ORCHESTRATOR.port
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 2
    """The next batch is planned while the previous one's transaction commits (measured: +10 % settled/s)."""
    pending_timeout_s: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] = 900
    """Timeout of every pending transfer: the ledger voids an authorization nobody settled by then."""
    resume_after_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    """An intent that has not moved for this long is resumed (its step's message sent again)."""
    already_failed_grace_s: Annotated[float, msgspec.Meta(gt=0)] = 120.0
    """How long a repeated command's `ID_ALREADY_FAILED` is ignored, waiting for the first answer."""
    resume_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """How often to look for such intents (besides once at start, for every open intent)."""
    rules_refresh_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    """How often to check whether fee rules, limit rules or routes changed (and reload them)."""
    default_tier: str = "standard"
    """The tier every user is in for tier limit rules (PM keeps no per-user tier yet)."""
    dead_letter_review_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How often the PSP DLQs are looked at (a dead job fails its intent, a dead result is an alert)."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=2, le=100)] = 8


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
