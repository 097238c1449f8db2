"""Configuration of pm-webhooks: the fleet's common `PM_*` variables (Redis, PostgreSQL,
`PM_KEY_ENCRYPTION_KEY`, which decrypts the endpoints' signing secrets) plus `PM_WEBHOOKS_*`."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.keys.crypto import Cipher, KeyConfigError
from pm_shared.settings import Port, ServiceSettings, SettingsError, load_settings

PREFIX = fleet.WEBHOOKS.prefix

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

SVIX_SCHEDULE = "5,300,1800,7200,18000,36000,36000"
"""Seconds before each retry, counted from the failure before it: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h,
10 h — Svix's schedule, about 27.5 h in all (https://docs.svix.com/retries)."""


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.WEBHOOKS.port
    pool_max_size: Annotated[int, msgspec.Meta(ge=2, le=100)] = 8
    request_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 15.0
    """The whole of one attempt (resolution, connection, request, answer); past it, a timeout."""
    claim_margin_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """A claim lasts the request timeout plus this: a killed sender's claims lapse that long after."""
    retry_schedule_s: str = SVIX_SCHEDULE
    """Comma-separated delays before each retry; after the last, the delivery is FAILED."""
    retry_jitter: Annotated[float, msgspec.Meta(ge=0, lt=1)] = 0.2
    """Each delay is drawn within ± this fraction of it."""
    retry_after_cap_s: Annotated[float, msgspec.Meta(ge=0)] = 86_400.0
    """A `Retry-After` asking for longer than this is honoured up to this."""
    disable_after_s: Annotated[float, msgspec.Meta(gt=0)] = 5 * 86_400.0
    """An endpoint that has failed for this long without one success is disabled."""
    allowed_networks: str = ""
    """Comma-separated networks (CIDR) an endpoint may resolve to although they are private,
    loopback, link-local…: `127.0.0.0/8,::1/128` for local development and tests. Empty in production."""
    endpoint_concurrency: Annotated[int, msgspec.Meta(ge=1, le=100)] = 4
    """Attempts in flight at once to one endpoint, per replica."""
    global_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    """Attempts in flight at once in this replica."""
    breaker_failures: Annotated[int, msgspec.Meta(ge=1)] = 5
    """Consecutive failures of an endpoint that open its circuit breaker."""
    breaker_cooldown_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    """How long an open breaker puts the endpoint's deliveries off (no attempt spent on them)."""
    poll_interval_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 0.5
    """How often due deliveries are looked for besides the fan-out's wake-ups (retries, other replicas')."""
    claim_batch: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 200
    """Deliveries claimed at most in one statement."""
    gauge_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """How often the pending-deliveries gauge is refreshed."""

    def retry_delays(self) -> tuple[float, ...]:
        return parse_schedule(self.retry_schedule_s)

    def networks(self) -> tuple[Network, ...]:
        return parse_networks(self.allowed_networks)


def parse_schedule(text: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise SettingsError(f"PM_{PREFIX}RETRY_SCHEDULE_S: not a list of seconds: {text!r}") from None
    if any(d < 0 for d in delays):
        raise SettingsError(f"PM_{PREFIX}RETRY_SCHEDULE_S: a delay is negative: {text!r}")
    return delays


def parse_networks(text: str) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(part.strip()) for part in text.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"PM_{PREFIX}ALLOWED_NETWORKS: {exc}") from None


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    settings = load_settings(Settings, PREFIX, environ)
    try:
        Cipher.from_setting(settings.key_encryption_key)
    except KeyConfigError as exc:
        # The endpoints' secrets cannot be read without it: a configuration error, not a crash later.
        raise SettingsError(str(exc)) from None
    settings.retry_delays()
    settings.networks()
    return settings
