"""The ledger interface: the eight operations of the official `tigerbeetle` 0.17 client, async and sync.

Both backends — the real TigerBeetle and the embedded PostgreSQL engine — take and return the
`tigerbeetle` package's own types (`Account`, `Transfer`, flags, filters, `Create*Result`), so code
written against one runs unchanged against the other.
"""

from __future__ import annotations

from typing import Any, Protocol, Self

import tigerbeetle as tb

# The per-request event maximum of a production TigerBeetle (1 MiB requests), and the query limit cap.
BATCH_MAX = 8189


class Ledger(Protocol):
    """The asynchronous interface (as `tigerbeetle.ClientAsync`)."""

    async def create_accounts(self, accounts: list[tb.Account]) -> list[tb.CreateAccountResult]: ...
    async def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]: ...
    async def lookup_accounts(self, ids: list[int]) -> list[tb.Account]: ...
    async def lookup_transfers(self, ids: list[int]) -> list[tb.Transfer]: ...
    async def get_account_transfers(self, filter: tb.AccountFilter) -> list[tb.Transfer]: ...  # noqa: A002
    async def get_account_balances(self, filter: tb.AccountFilter) -> list[tb.AccountBalance]: ...  # noqa: A002
    async def query_accounts(self, filter: tb.QueryFilter) -> list[tb.Account]: ...  # noqa: A002
    async def query_transfers(self, filter: tb.QueryFilter) -> list[tb.Transfer]: ...  # noqa: A002
    async def close(self) -> None: ...


class LedgerSync(Protocol):
    """The synchronous twin (as `tigerbeetle.ClientSync`), for scripts and the conformance suite."""

    def create_accounts(self, accounts: list[tb.Account]) -> list[tb.CreateAccountResult]: ...
    def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]: ...
    def lookup_accounts(self, ids: list[int]) -> list[tb.Account]: ...
    def lookup_transfers(self, ids: list[int]) -> list[tb.Transfer]: ...
    def get_account_transfers(self, filter: tb.AccountFilter) -> list[tb.Transfer]: ...  # noqa: A002
    def get_account_balances(self, filter: tb.AccountFilter) -> list[tb.AccountBalance]: ...  # noqa: A002
    def query_accounts(self, filter: tb.QueryFilter) -> list[tb.Account]: ...  # noqa: A002
    def query_transfers(self, filter: tb.QueryFilter) -> list[tb.Transfer]: ...  # noqa: A002
    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None: ...
