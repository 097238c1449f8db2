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
"""Anything the database or the connection to it can raise (a refused statement included), as opposed
to a bug in the caller."""
