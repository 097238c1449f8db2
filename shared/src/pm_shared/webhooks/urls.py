"""Which URLs a merchant's webhook endpoint may have (docs/webhooks-api.md), checked when an endpoint
is created (the admin API, `pm webhooks add`).

An absolute `http(s)://host[:port]/path?query` URL: no user:password (it would travel in every
request's Authorization), no fragment, a host that is a DNS name or an IP literal. `https` unless
http is allowed (a local receiver in development). A host that is a private, loopback, link-local
or otherwise non-public IP literal (or an IPv6 one that carries such an IPv4 address: mapped,
NAT64, 6to4), `localhost` or a `*.localhost` name, is refused unless the allowed networks hold it.
Unusual spellings of an IPv4 address that the system resolver reads as one (`2130706433`,
`0x7f.1`, `127.1`) are read as that address. A DNS name that resolves to a private address is the
sender's to refuse, when it connects: a name can point elsewhere later.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
URL_MAX = 2048
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\.?")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4ISH = re.compile(r"[0-9a-fA-FxX.]+")
"""What inet_aton might read as an IPv4 address (decimal, octal, hex parts)."""


class UrlRefusedError(ValueError):
    """The URL is not one an endpoint may have; `code` is the API's problem code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class UrlPolicy:
    allowed_networks: tuple[IPNetwork, ...] = ()
    """Non-public addresses an endpoint may still have (`PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS`)."""
    allow_http: bool = False
    """Whether `http://` is taken (`PM_GATEWAY_WEBHOOK_ALLOW_HTTP`)."""


@functools.cache
def networks(cidrs: str) -> tuple[IPNetwork, ...]:
    """The networks of a comma-separated CIDR list (a bare address is a /32 or /128); ValueError."""
    return tuple(
        ipaddress.ip_network(part.strip(), strict=False) for part in cidrs.split(",") if part.strip()
    )


def _invalid(message: str) -> UrlRefusedError:
    return UrlRefusedError("webhook_url_invalid", message)


def _literal(host: str) -> IPAddress | None:
    """The address a host names by itself, or None for a DNS name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if not _IPV4ISH.fullmatch(host):
            return None
        try:
            packed = socket.inet_aton(host)
        except OSError:
            return None
        address = ipaddress.IPv4Address(packed)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # what a connection to it reaches
    return address


def _embedded(address: IPAddress) -> IPAddress | None:
    """The IPv4 address an IPv6 one carries to a gateway (NAT64's 64:ff9b::/96, 6to4's 2002::/16)."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def _addresses(host: str) -> Iterable[IPAddress]:
    """The addresses to judge a host by: its own if it is a literal, loopback for localhost names."""
    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return (ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1"))
    found = _literal(name)
    if found is None:
        return ()
    inner = _embedded(found)
    return (found,) if inner is None else (found, inner)


def public(address: IPAddress) -> bool:
    return address.is_global and not address.is_multicast


def allowed(address: IPAddress, policy: UrlPolicy) -> bool:
    return public(address) or any(address in net for net in policy.allowed_networks)


def check(url: str, policy: UrlPolicy) -> str:
    """`url` if an endpoint may have it; UrlRefusedError (`webhook_url_invalid`,
    `webhook_url_https_required`, `webhook_url_not_allowed`) otherwise."""
    if len(url) > URL_MAX or not url.isascii() or not url.isprintable() or " " in url:
        raise _invalid(f"a webhook URL is at most {URL_MAX} printable ASCII characters, no spaces")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _invalid(f"not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not url.lower().startswith(parts.scheme + "://"):
        raise _invalid("a webhook URL is http:// or https://")
    if "@" in parts.netloc:
        raise _invalid("a webhook URL carries no user or password")
    if parts.fragment or url.endswith("#"):
        raise _invalid("a webhook URL has no #fragment (it is never sent)")
    host = parts.hostname or ""
    bracketed = parts.netloc.startswith("[")
    if not host or (not bracketed and not _HOSTNAME.fullmatch(host)) or port == 0:
        raise _invalid("a webhook URL names a host: a DNS name or an IP address (and a port 1-65535)")
    if bracketed and _literal(host) is None:
        raise _invalid("only an IPv6 address goes in brackets")
    if parts.scheme == "http" and not policy.allow_http:
        raise UrlRefusedError("webhook_url_https_required", "a webhook URL is https:// here")
    for address in _addresses(host):
        if not allowed(address, policy):
            raise UrlRefusedError(
                "webhook_url_not_allowed",
                f"{address} is not a public address, and the allowed networks do not hold it",
            )
    return url
