"""Configuration from `PM_*` environment variables into msgspec Structs.

Variables shared by the whole fleet are named `PM_<FIELD>` (`PM_REDIS_URL`); a service's own are
named `PM_<SERVICE>_<FIELD>` (`PM_GATEWAY_PORT`). A `PM_*` variable that no part of the fleet
knows is a start-up error, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Annotated, TypeVar

import msgspec

from pm_shared import fleet
from pm_shared.errors import PMError

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
Positive = Annotated[int, msgspec.Meta(ge=1)]

# Every process's variable prefix (and the benchmark's); a variable under another process's prefix is
# that process's to check.
SERVICE_PREFIXES: tuple[str, ...] = (*(m.prefix for m in fleet.FLEET), "BENCH_")

# Read by tooling rather than by a service Struct (test suites, the CLI); known, so never "unknown".
TOOLING_VARIABLES: frozenset[str] = frozenset(
    {
        "PM_TB_ADDRESSES",
        "PM_TEST_DATABASE_URL",
        "PM_TEST_REDIS_DB",
        "PM_HOME",
        "PM_GATEWAY_URL",
        "PM_ENV_FILE",
        "PM_FRONT_DOOR_PORT",  # where `pm up` serves nginx (pm_tools.up.front_door)
    }
)


class SettingsError(PMError):
    """The environment does not describe a valid configuration."""


class CommonSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Settings every process of the fleet shares (`PM_<FIELD>`)."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/pm"
    # 32 random bytes, base64: encrypts service-key secrets at rest (pm_shared.keys.crypto). Needed by
    # the gateway and `pm keys`; never logged.
    key_encryption_key: str = ""
    ledger_url: str = ""
    log_level: str = "INFO"
    log_format: str = "json"
    # A consumer name must be unique among live processes and stable across restarts (the pod name).
    consumer_name: str = ""
    stream_partitions: Positive = 1
    stream_maxlen: Annotated[int, msgspec.Meta(ge=100)] = 10_000
    # Producers stop dispatching at this many outstanding entries; 0 means half of stream_maxlen.
    stream_backpressure_threshold: Annotated[int, msgspec.Meta(ge=0)] = 0
    stream_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    stream_block_ms: Annotated[int, msgspec.Meta(ge=1, le=2_000)] = 2_000
    stream_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 100
    # Batches in hand at once per partition (see pm_shared.streams.consumer).
    stream_batches_in_flight: Annotated[int, msgspec.Meta(ge=1, le=8)] = 1
    stream_lease_ms: Annotated[int, msgspec.Meta(ge=100)] = 30_000
    stream_retry_delay_ms: Annotated[int, msgspec.Meta(ge=0)] = 1_000
    stream_max_deliveries: Annotated[int, msgspec.Meta(ge=1)] = 3
    stream_claim_interval_ms: Annotated[int, msgspec.Meta(ge=10)] = 5_000
    # A handler that met a PostgreSQL/Redis outage is called again in place this long before the
    # failure counts as a delivery (see pm_shared.streams.batches).
    stream_transient_retry_s: Annotated[float, msgspec.Meta(ge=0)] = 300.0
    shutdown_grace_s: Annotated[float, msgspec.Meta(gt=0)] = 25.0
    # Currency exchange (docs/fx.md): a quote is refused when the newest rate of its pair is older
    # than this, and is locked this long once given.
    fx_rate_max_age_s: Annotated[float, msgspec.Meta(gt=0)] = 3_600.0
    fx_quote_ttl_s: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 60.0

    def consumer(self, service: str) -> str:
        """This process's consumer name: configured, else the host name (a pod name on Kubernetes)."""
        return self.consumer_name or f"{socket.gethostname()}-{service}"

    @property
    def backpressure_threshold(self) -> int:
        return self.stream_backpressure_threshold or self.stream_maxlen // 2


class ServiceSettings(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A service's own settings (`PM_<SERVICE>_HOST`, `PM_<SERVICE>_PORT`) on top of the common ones."""

    host: str = "127.0.0.1"
    """Interface of the service's HTTP endpoint (health, readiness, metrics; the API for the gateway)."""
    port: Port = 8080


S = TypeVar("S", bound=msgspec.Struct)


def _fields(settings_type: type[msgspec.Struct]) -> set[str]:
    return set(settings_type.__struct_fields__)


def load_settings(settings_type: type[S], prefix: str = "", environ: Mapping[str, str] | None = None) -> S:
    """Build `settings_type` from `PM_*` variables.

    Args:
        settings_type: a Struct (usually a subclass of `CommonSettings`).
        prefix: the service's own prefix after `PM_`, e.g. `"GATEWAY_"`; its variables fill the
            fields that are not common ones.
        environ: the environment; `os.environ` when omitted.
    """
    env = os.environ if environ is None else environ
    common = _fields(CommonSettings)
    own = _fields(settings_type) - common
    raw: dict[str, str] = {}
    unknown: list[str] = []
    for name, value in env.items():
        if not name.startswith("PM_") or name in TOOLING_VARIABLES:
            continue
        rest = name[3:]
        if prefix and rest.startswith(prefix):
            field = rest[len(prefix) :].lower()
            if field in own:
                raw[field] = value
            else:
                unknown.append(name)
        elif rest.lower() in common:
            if rest.lower() in _fields(settings_type):
                raw[rest.lower()] = value
        elif rest.startswith(SERVICE_PREFIXES):
            continue
        else:
            unknown.append(name)
    if unknown:
        raise SettingsError(f"unknown configuration variable(s): {', '.join(sorted(unknown))}")
    try:
        return msgspec.convert(raw, settings_type, strict=False)
    except msgspec.ValidationError as exc:
        raise SettingsError(_describe(exc, prefix, common)) from exc


def _describe(exc: msgspec.ValidationError, prefix: str, common: set[str]) -> str:
    """Rewrite msgspec's `$.field` path into the variable name the operator has to fix."""
    text = str(exc)
    marker = "`$."
    if marker in text:
        start = text.index(marker) + len(marker)
        field = text[start:].split("`", 1)[0]
        var = f"PM_{field.upper()}" if field in common else f"PM_{prefix}{field.upper()}"
        return f"{var}: {text[: text.index(' - at')] if ' - at' in text else text}"
    return text
