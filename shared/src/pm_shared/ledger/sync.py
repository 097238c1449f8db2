"""A synchronous twin of an async ledger: its own event loop on a thread, one call at a time."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import tigerbeetle as tb

from pm_shared.ledger.api import Ledger

T = TypeVar("T")


class SyncLedger:
    """Runs an async `Ledger` on a private event loop so scripts and tests can call it synchronously."""

    def __init__(self, open_async: Callable[[], Awaitable[Ledger]]) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pm-ledger-sync", daemon=True)
        self._thread.start()
        try:
            self._ledger = self._call(_awaited(open_async))
        except BaseException:
            self._stop_loop()
            raise

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def create_accounts(self, accounts: list[tb.Account]) -> list[tb.CreateAccountResult]:
        return self._call(_awaited(lambda: self._ledger.create_accounts(accounts)))

    def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        return self._call(_awaited(lambda: self._ledger.create_transfers(transfers)))

    def lookup_accounts(self, ids: list[int]) -> list[tb.Account]:
        return self._call(_awaited(lambda: self._ledger.lookup_accounts(ids)))

    def lookup_transfers(self, ids: list[int]) -> list[tb.Transfer]:
        return self._call(_awaited(lambda: self._ledger.lookup_transfers(ids)))

    def get_account_transfers(self, filter: tb.AccountFilter) -> list[tb.Transfer]:  # noqa: A002
        return self._call(_awaited(lambda: self._ledger.get_account_transfers(filter)))

    def get_account_balances(self, filter: tb.AccountFilter) -> list[tb.AccountBalance]:  # noqa: A002
        return self._call(_awaited(lambda: self._ledger.get_account_balances(filter)))

    def query_accounts(self, filter: tb.QueryFilter) -> list[tb.Account]:  # noqa: A002
        return self._call(_awaited(lambda: self._ledger.query_accounts(filter)))

    def query_transfers(self, filter: tb.QueryFilter) -> list[tb.Transfer]:  # noqa: A002
        return self._call(_awaited(lambda: self._ledger.query_transfers(filter)))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._call(_awaited(self._ledger.close))
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncLedger:
        return self

    def __exit__(self, exc_type: Any, exc_val: Any, exc_tb: Any) -> None:
        self.close()


async def _awaited(call: Callable[[], Awaitable[T]]) -> T:
    # The awaitable is created on the loop's thread: asyncpg objects belong to the loop that made them.
    return await call()
