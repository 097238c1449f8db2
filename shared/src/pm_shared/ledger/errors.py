"""What a ledger request raises when the ledger cannot be reached, as opposed to refusing the request."""

from __future__ import annotations

import asyncpg

UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError is one too
    asyncpg.PostgresConnectionError,  # the connection broke during the request
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
)
"""The embedded engine's "try again later": nothing of the request was applied (it is one
transaction). The TigerBeetle client never raises these: it keeps retrying until the cluster answers."""
