"""Which asyncpg errors mean "the database connection went away" rather than "the statement failed"."""

from __future__ import annotations

import asyncpg

CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, unreachable; TimeoutError is one too
    asyncpg.PostgresConnectionError,  # class 08: the connection broke during the request
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.OperatorInterventionError,  # class 57: admin or crash shutdown under a running query
    # A pooled connection that received the server's FATAL (a shutdown) while idle is handed out
    # before asyncpg has seen the socket close; its next statement fails with "cannot switch to
    # state N; another operation (2) is in progress" (asyncpg issues #784, #1069). The pool drops
    # the connection when it comes back, so trying again gets a fresh one.
    asyncpg.InternalClientError,
)
"""Worth trying again on another connection: a statement that failed with one of these either never
ran or ran in a transaction the server rolled back (or, for a COMMIT whose answer was lost, may have
committed — so only idempotent work is simply repeated)."""

DATABASE_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
"""Anything a statement can fail with in asyncpg or PostgreSQL (a refused statement and a lost
connection included), as opposed to an error of the caller's own code."""
