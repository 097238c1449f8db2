"""Configuration of the Auth Center sandbox: `PM_AUTH_SANDBOX_*` variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.settings import Port, load_settings

PREFIX = fleet.AUTH_SANDBOX.prefix


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    host: str = "127.0.0.1"
    port: Port = fleet.AUTH_SANDBOX.port
    secret: str = "auth-sandbox-secret"
    """Signs the tokens it issues (HMAC-SHA256); a token signed with another secret is refused."""
    max_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 86_400


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    return load_settings(Settings, PREFIX, environ)
