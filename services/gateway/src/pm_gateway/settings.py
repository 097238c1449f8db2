"""Configuration of pm-gateway: the fleet's common `PM_*` variables plus `PM_GATEWAY_*`."""

from __future__ import annotations

import functools
import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated

import msgspec

from pm_shared import fleet
from pm_shared.keys.crypto import Cipher, KeyConfigError
from pm_shared.settings import Port, ServiceSettings, SettingsError, load_settings
from pm_shared.webhooks.urls import UrlPolicy

PREFIX = fleet.GATEWAY.prefix

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PROXY_SECRET_MIN = 32


class Settings(ServiceSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = fleet.GATEWAY.port
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1024, le=1_048_576)] = 65_536
    """Larger request bodies are refused (413) before they are read in full."""
    key_cache_s: Annotated[float, msgspec.Meta(ge=0, le=60)] = 2.0
    """How long a service key (status, permissions, secrets) is trusted from memory: a deactivation or
    rotation takes effect on every gateway within this time."""
    max_wait_s: Annotated[int, msgspec.Meta(ge=0, le=30)] = 30
    """The largest `Prefer: wait=N` honoured."""
    wallet_open_wait_s: Annotated[float, msgspec.Meta(ge=0, le=30)] = 5.0
    """How long `POST /v1/wallets` waits for the ledger-writer to open the account before answering
    202 (opening continues; the request can be repeated)."""
    pool_max_size: Annotated[int, msgspec.Meta(ge=1, le=200)] = 20
    # Inbound PSP callbacks (pm_gateway.webhooks). The secrets default to the sandboxes' own defaults,
    # so a local fleet works unconfigured; production sets the PSPs' real ones.
    ipps_callback_secret: str = "ipps-sandbox-callback-secret"
    """HMAC-SHA256 key of IPPS's `X-IPPS-Signature` (the IPPS sandbox's `PM_IPPS_SANDBOX_CALLBACK_SECRET`)."""
    qp_callback_secret: str = "qp-sandbox-secret"
    """HMAC-SHA256 key of QP's `X-QP-Signature` (the QP sandbox's `PM_QP_SANDBOX_SECRET`)."""
    ipps_callback_allowlist: str = "127.0.0.1/32,::1/128"
    """Comma-separated CIDRs an IPPS callback may come from (the socket peer; see trusted proxies)."""
    qp_callback_allowlist: str = "127.0.0.1/32,::1/128"
    callback_trusted_proxies: str = ""
    """Comma-separated CIDRs of reverse proxies whose `X-Forwarded-For` is believed; none by default."""
    proxy_secret: str = ""
    """The secret nginx adds to every `/v1/me` request (pm_gateway.me); unset, `/v1/me` is refused.
    At least `PROXY_SECRET_MIN` characters: a short one (a placeholder left in place) is a
    configuration error, since whoever knows it may speak for any user."""
    callback_dedupe_ttl_s: Annotated[int, msgspec.Meta(ge=60)] = 7 * 86_400
    """How long a callback's id is remembered: a redelivery within it is acknowledged, not passed on."""
    # Merchants' webhook endpoints (pm_gateway.webhook_endpoints, pm_shared.webhooks.urls).
    webhook_allowed_networks: str = ""
    """Comma-separated CIDRs of non-public addresses an endpoint's URL may still name (a receiver on
    this host or network); none by default. The sender's `PM_WEBHOOKS_ALLOWED_NETWORKS` is the same
    for delivering."""
    webhook_allow_http: bool = False
    """Whether an endpoint's URL may be `http://` (a local receiver); https only by default."""

    def webhook_url_policy(self) -> UrlPolicy:
        return UrlPolicy(networks(self.webhook_allowed_networks), self.webhook_allow_http)

    def ledger(self) -> str:
        """The ledger URL (read-only here): `PM_LEDGER_URL`, else the embedded engine in the database."""
        return self.ledger_url or "embedded+" + self.database_url


def load(environ: Mapping[str, str] = os.environ) -> Settings:
    settings = load_settings(Settings, PREFIX, environ)
    try:
        Cipher.from_setting(settings.key_encryption_key)
    except KeyConfigError as exc:
        # A configuration error (exit 2 naming the variable), not a crash after start.
        raise SettingsError(str(exc)) from None
    if settings.proxy_secret and len(settings.proxy_secret) < PROXY_SECRET_MIN:
        raise SettingsError(
            f"PM_{PREFIX}PROXY_SECRET must be at least {PROXY_SECRET_MIN} characters (a random one: "
            "`python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`), or unset to close /v1/me"
        )
    for field in (
        "ipps_callback_allowlist",
        "qp_callback_allowlist",
        "callback_trusted_proxies",
        "webhook_allowed_networks",
    ):
        try:
            networks(getattr(settings, field))
        except ValueError as exc:
            raise SettingsError(f"PM_{PREFIX}{field.upper()}: {exc}") from None
    return settings


@functools.cache
def networks(cidrs: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated CIDR list (a bare address is a /32 or /128)."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in cidrs.split(",") if part.strip()
    )
