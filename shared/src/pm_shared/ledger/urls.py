"""Ledger URLs: `tigerbeetle://<cluster>@<addr>[,<addr>…]` and `embedded+postgresql://user@host:port/db`."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit


class LedgerUrlError(ValueError):
    """A ledger URL that names no backend PM has, or is malformed."""


@dataclass(frozen=True)
class TigerBeetleUrl:
    cluster_id: int
    addresses: str
    """Comma-separated replica addresses, as the client takes them."""


@dataclass(frozen=True)
class EmbeddedUrl:
    dsn: str
    """The PostgreSQL DSN (`postgresql://…`) of the database holding schema `ledger`."""


def parse(url: str) -> TigerBeetleUrl | EmbeddedUrl:
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise LedgerUrlError(
            f"not a ledger URL: {url!r} (expected tigerbeetle://… or embedded+postgresql://…)"
        )
    if scheme == "tigerbeetle":
        cluster, at, addresses = rest.partition("@")
        if not at or not cluster.isdigit() or not addresses:
            raise LedgerUrlError(f"expected tigerbeetle://<cluster id>@<addr>[,<addr>…], got {url!r}")
        if any(not a for a in addresses.split(",")):
            raise LedgerUrlError(f"empty replica address in {url!r}")
        return TigerBeetleUrl(int(cluster), addresses)
    if scheme in ("embedded+postgresql", "embedded+postgres"):
        dsn = "postgresql://" + rest
        if not urlsplit(dsn).path.strip("/"):
            raise LedgerUrlError(f"the embedded ledger URL names no database: {url!r}")
        return EmbeddedUrl(dsn)
    raise LedgerUrlError(f"unknown ledger backend {scheme!r} in {url!r} (tigerbeetle or embedded+postgresql)")
