"""Configuration of pm-orchestrator: the fleet's common `PM_*` variables plus `PM_ORCHESTRATOR_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pm_shared.settings import Port, ServiceSettings, load_settings

PREFIX = "ORCHESTRATOR_"


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = 9101


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
