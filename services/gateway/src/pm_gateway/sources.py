"""Where a request comes from, for the PSP callbacks' source-address allowlists.

The socket peer is the source. `X-Forwarded-For` is believed only when the peer itself is one of
the configured trusted proxies (none by default): anyone can write that header, so trusting it from
an arbitrary peer would let any caller claim an allowlisted address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import Request

from pm_gateway.settings import IPNetwork

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def _address(text: str) -> IPAddress | None:
    try:
        found = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    # A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d; the allowlists are written in IPv4.
    if isinstance(found, ipaddress.IPv6Address) and found.ipv4_mapped is not None:
        return found.ipv4_mapped
    return found


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def source(request: Request, trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    """The caller's address, or None when it cannot be told (no peer, or a malformed forwarded hop)."""
    if request.client is None:
        return None
    peer = _address(request.client.host)
    if peer is None or not trusted_proxies or not _within(peer, trusted_proxies):
        return peer
    # Each proxy appends the address it received from; the first hop from the right that is not one
    # of ours is the caller (anything left of it was written by the caller and proves nothing).
    hops = [hop for value in request.headers.getlist("x-forwarded-for") for hop in value.split(",")]
    current = peer
    for hop in reversed(hops):
        if not _within(current, trusted_proxies):
            break
        parsed = _address(hop)
        if parsed is None:
            return None
        current = parsed
    return current


def allowed(request: Request, allowlist: Sequence[IPNetwork], trusted_proxies: Sequence[IPNetwork]) -> bool:
    found = source(request, trusted_proxies)
    return found is not None and _within(found, allowlist)
