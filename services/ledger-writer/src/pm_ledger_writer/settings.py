"""Configuration of pm-ledger-writer: the fleet's common `PM_*` variables plus `PM_LEDGER_WRITER_*`."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pm_shared.settings import CommonSettings, Port, load_settings

PREFIX = "LEDGER_WRITER_"


class Settings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    """Interface of the health and metrics endpoint."""
    port: Port = 9102


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
