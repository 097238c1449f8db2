"""What a ledger request raises when the ledger cannot be reached, as opposed to refusing the request."""

from __future__ import annotations

from pm_shared.db.errors import CONNECTION_LOST

UNAVAILABLE: tuple[type[BaseException], ...] = CONNECTION_LOST
"""The embedded engine's "try again later": nothing of the request was applied (it is one
transaction). The TigerBeetle client never raises these: it keeps retrying until the cluster answers."""
