"""The embedded ledger engine: TigerBeetle 0.17.9 semantics on PostgreSQL (see docs/ledger.md)."""

from __future__ import annotations

from pm_shared.ledger.embedded.ledger import EmbeddedLedger, ReadOnlyLedgerError

__all__ = ["EmbeddedLedger", "ReadOnlyLedgerError"]
