"""Configuration of pm-reconciler: the fleet's common `PM_*` variables plus `PM_RECONCILER_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pm_shared import fleet
from pm_shared.settings import Port, ServiceSettings, load_settings

PREFIX = fleet.RECONCILER.prefix


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.RECONCILER.port


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
