"""Where an attempt may go (SSRF protection): http or https only, and a host whose every address is
public, unless inside the configured allow-list (`PM_WEBHOOKS_ALLOWED_NETWORKS`).

The host is resolved before each attempt and the request is sent to the address that was checked (the
`Host` header and, for https, the TLS server name stay the URL's host), so a name that resolves to a
public address when checked and to a private one when connected (DNS rebinding) never reaches it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from yarl import URL

from pm_webhooks.settings import Network

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_PORTS = {"http": 80, "https": 443}


class AddressNotAllowedError(Exception):
    """The endpoint's URL may not be called (its reason is the attempt's error)."""

    def __init__(self, error: str, detail: str) -> None:
        super().__init__(f"{error}: {detail}")
        self.error = error
        self.detail = detail


@dataclass(frozen=True)
class Target:
    """A checked URL: the URL to send to (host replaced by the address), and the host it names."""

    url: URL
    host_header: str
    server_name: str


NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def embedded(address: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one reaches: mapped (::ffff:a.b.c.d), NAT64 or 6to4."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address.sixtofour


def forbidden(address: Address) -> bool:
    """Private, loopback, link-local, multicast, reserved or unspecified (or an IPv6 address carrying
    such an IPv4 one): not on the public Internet."""
    inner = embedded(address)
    if inner is not None and forbidden(inner):
        return True
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def allowed(address: Address, networks: Sequence[Network]) -> bool:
    return any(address in network for network in networks) or not forbidden(address)


async def resolve(host: str, port: int) -> list[Address]:
    try:
        return [ipaddress.ip_address(host.strip("[]"))]
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(info[4][0]) for info in infos]


async def check(url: str, networks: Sequence[Network]) -> Target:
    """The target of `url`; AddressNotAllowedError when it may not be called."""
    try:
        parsed = URL(url)
        port = parsed.explicit_port
    except ValueError as exc:
        raise AddressNotAllowedError("invalid_url", str(exc)) from None
    if parsed.scheme not in DEFAULT_PORTS or not parsed.host:
        raise AddressNotAllowedError("invalid_url", f"not an http(s) URL with a host: {parsed.scheme}")
    if port is None:
        port = DEFAULT_PORTS[parsed.scheme]
    try:
        addresses = await resolve(parsed.host, port)
    except OSError as exc:
        raise AddressNotAllowedError("dns_error", f"{parsed.host}: {exc}") from None
    refused = [a for a in addresses if not allowed(a, networks)]
    if refused or not addresses:
        raise AddressNotAllowedError("address_not_allowed", f"{parsed.host} resolves to {refused}")
    address = addresses[0]
    name = f"[{parsed.host}]" if ":" in parsed.host else parsed.host  # an IPv6 literal keeps its brackets
    host_header = name if parsed.explicit_port is None else f"{name}:{parsed.explicit_port}"
    return Target(parsed.with_host(str(address)).with_port(port), host_header, parsed.host)
