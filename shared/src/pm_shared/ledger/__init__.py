"""The ledger: one interface with the `tigerbeetle` client's operations and types, two backends.

See docs/ledger.md.

`open_ledger(url)` gives the async interface, `open_ledger_sync(url)` its synchronous twin:
- `tigerbeetle://<cluster>@<addr>[,<addr>…]` — the real TigerBeetle through the official client;
- `embedded+postgresql://user@host:port/db` — the embedded engine in PostgreSQL (schema `ledger`).
"""

from __future__ import annotations

import tigerbeetle as tb

from pm_shared.ledger.api import BATCH_MAX, Ledger, LedgerSync
from pm_shared.ledger.sync import SyncLedger
from pm_shared.ledger.urls import EmbeddedUrl, LedgerUrlError, TigerBeetleUrl, parse

__all__ = ["BATCH_MAX", "Ledger", "LedgerSync", "LedgerUrlError", "open_ledger", "open_ledger_sync"]


async def open_ledger(url: str, *, readonly: bool = False) -> Ledger:
    """The async ledger at `url`; close it with `await ledger.close()`.

    `readonly`: for everything but the ledger writer, the only process that writes. The embedded
    engine then refuses writes and never runs its expiry pulse; a TigerBeetle client is unaffected
    (the cluster itself serialises writers).
    """
    target = parse(url)
    if isinstance(target, TigerBeetleUrl):
        return tb.ClientAsync(cluster_id=target.cluster_id, replica_addresses=target.addresses)
    return await _open_embedded(target, readonly)


def open_ledger_sync(url: str, *, readonly: bool = False) -> LedgerSync:
    """The synchronous ledger at `url` (a context manager; or call `close()`)."""
    target = parse(url)
    if isinstance(target, TigerBeetleUrl):
        return tb.ClientSync(cluster_id=target.cluster_id, replica_addresses=target.addresses)
    return SyncLedger(lambda: _open_embedded(target, readonly))


async def _open_embedded(target: EmbeddedUrl, readonly: bool) -> Ledger:
    # Imported here: the engine pulls in asyncpg machinery a TigerBeetle deployment never needs.
    from pm_shared.ledger.embedded import EmbeddedLedger

    return await EmbeddedLedger.open(target.dsn, readonly=readonly)
