"""`EmbeddedLedger`: the `Ledger` protocol on PostgreSQL with TigerBeetle 0.17.9 semantics.

Every write request is one PostgreSQL transaction, serialised by an asyncio.Lock in-process and a
transaction-scoped advisory lock across processes; results are returned only after COMMIT. Accounts
are cached in memory; the cache is trusted only while the engine's `last_timestamp` in the database is
the one this instance last committed (another writer, or a failed transaction, empties it).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any

import asyncpg
import tigerbeetle as tb

from pm_shared.db import Conn, Pool
from pm_shared.db.pool import PoolTuning, create_pool
from pm_shared.ledger.api import BATCH_MAX
from pm_shared.ledger.embedded import checks, store
from pm_shared.ledger.embedded import queries as q
from pm_shared.ledger.embedded.accounts import AccountBatch
from pm_shared.ledger.embedded.batch import account_status, transfer_status
from pm_shared.ledger.embedded.engine import TransferBatch, expire
from pm_shared.ledger.embedded.model import (
    A_HISTORY,
    P_PENDING,
    T_IMPORTED,
    T_PENDING,
    TS_MAX,
    U128_MAX,
    AccountRow,
    Changes,
)

_ACCOUNT_TRANSFERS = {
    (True, False, False): q.ACCOUNT_TRANSFERS_DEBITS,
    (True, False, True): q.ACCOUNT_TRANSFERS_DEBITS_REVERSED,
    (False, True, False): q.ACCOUNT_TRANSFERS_CREDITS,
    (False, True, True): q.ACCOUNT_TRANSFERS_CREDITS_REVERSED,
    (True, True, False): q.ACCOUNT_TRANSFERS_BOTH,
    (True, True, True): q.ACCOUNT_TRANSFERS_BOTH_REVERSED,
}


class ReadOnlyLedgerError(RuntimeError):
    """A write on an `EmbeddedLedger` opened with `readonly=True`."""


class EmbeddedLedger:
    """The async `Ledger` on PostgreSQL (schema `ledger`, migration 0002)."""

    def __init__(self, pool: Pool, *, batch_max: int = BATCH_MAX, readonly: bool = False) -> None:
        self._pool = pool
        self._batch_max = batch_max
        self._readonly = readonly
        self._lock = asyncio.Lock()
        self._accounts: dict[int, AccountRow] = {}
        # The last_timestamp this instance committed; None = unknown, so the cache must be refilled.
        self._last_ts: int | None = None
        # A lower bound of the earliest expires_at among pending transfers (None: none has a timeout).
        self._next_expiry: int | None = None
        self._closed = False

    @classmethod
    async def open(
        cls, dsn: str, *, batch_max: int = BATCH_MAX, max_size: int = 4, readonly: bool = False
    ) -> EmbeddedLedger:
        """Open a pool on `dsn` (migrated to 0002 or later).

        `readonly`: for services other than the ledger-writer. Writes raise
        `ReadOnlyLedgerError`, and reads never run an expiry pulse, so they may still show expired
        reservations until the writer's next request (TigerBeetle documents expiry as best effort).
        """
        # Through pm_shared.db, so a URL ending in ?pool_mode=transaction (PgBouncer) is honoured.
        pool: Pool = await create_pool(
            dsn,
            min_size=1,
            max_size=max_size,
            connect_timeout_s=60.0,
            application_name="pm ledger",
            # Batches pass arrays of up to 8189 ids: a generic plan (chosen after 5 runs of a prepared
            # statement) can scan a whole table comparing each row with the array; plan every run.
            tuning=PoolTuning(command_timeout_s=None, plan_cache_mode="force_custom_plan"),
            init=store.init_connection,
        )
        ledger = cls(pool, batch_max=batch_max, readonly=readonly)
        try:
            async with pool.acquire() as conn:
                ledger._next_expiry = await store.next_expiry(conn)
        except BaseException:
            await pool.close()
            raise
        return ledger

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._pool.close()

    async def __aenter__(self) -> EmbeddedLedger:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Writes.

    async def create_accounts(self, accounts: list[tb.Account]) -> list[tb.CreateAccountResult]:
        checks.check_batch(accounts, self._batch_max, transfers=False)
        if not accounts:
            return []
        results = await self._write(accounts, transfers=False)
        return [tb.CreateAccountResult(timestamp=ts, status=account_status(s)) for ts, s in results]

    async def create_transfers(self, transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        checks.check_batch(transfers, self._batch_max, transfers=True)
        if not transfers:
            return []
        results = await self._write(transfers, transfers=True)
        return [tb.CreateTransferResult(timestamp=ts, status=transfer_status(s)) for ts, s in results]

    async def _write(self, events: Sequence[Any], *, transfers: bool | None) -> list[tuple[int, int]]:
        """Run one request (or, with `transfers=None`, only an expiry pulse) in one transaction."""
        if self._readonly:
            raise ReadOnlyLedgerError("this embedded ledger was opened read-only")
        async with self._lock, self._pool.acquire() as conn:
            await conn.execute(q.BEGIN_WRITE)
            try:
                results, last_ts, next_expiry, changed = await self._write_locked(conn, events, transfers)
                # The new last timestamp and the COMMIT in one round trip (one simple query).
                await conn.execute(q.commit_at(last_ts) if changed else q.COMMIT)
            except BaseException as exc:
                # The rows the engine mutated may describe a state that was never committed.
                self._accounts.clear()
                self._last_ts = None
                if isinstance(exc, Exception) and not conn.is_closed():
                    # Otherwise (cancelled, connection lost) releasing the connection rolls it back.
                    with contextlib.suppress(Exception):
                        await conn.execute(q.ROLLBACK)
                raise
            self._last_ts = last_ts
            self._next_expiry = next_expiry
            return results

    async def _ensure_accounts(self, conn: Conn, ids: set[int]) -> None:
        cache = self._accounts
        missing = [i for i in ids if i not in cache]
        if missing:
            await store.load_accounts(conn, missing, cache)

    async def _write_locked(
        self, conn: Conn, events: Sequence[Any], transfers: bool | None
    ) -> tuple[list[tuple[int, int]], int, int | None, bool]:
        """Run the request (and a due expiry pulse) inside the caller's transaction: its results, the
        last timestamp used, the next expiry, and whether anything changed (then the caller commits
        the last timestamp with `q.commit_at`)."""
        last = await store.last_timestamp(conn)
        next_expiry = self._next_expiry
        if last != self._last_ts:
            # Another writer committed (or our last transaction failed): nothing cached is trusted.
            self._accounts.clear()
            next_expiry = await store.next_expiry(conn)
        now = time.time_ns()
        changed = False
        # Expire due reservations before the request, as a pulse with its own timestamp.
        pulse_ts = max(last + 1, now)
        if next_expiry is not None and next_expiry <= pulse_ts:
            due = await store.load_due(conn, pulse_ts)
            if due:
                await self._ensure_accounts(conn, {p.dr for p in due} | {p.cr for p in due})
                pulse = Changes()
                expire(due, self._accounts, pulse)
                await store.persist(conn, pulse)
                last = pulse_ts
                changed = True
            next_expiry = await store.next_expiry(conn)
        results: list[tuple[int, int]] = []
        if events:
            first_ts = max(last + 1, now)
            if transfers:
                results, changes = await self._run_transfers(conn, events, first_ts)
            else:
                results, changes = await self._run_accounts(conn, events, first_ts)
            await store.persist(conn, changes)
            expiries = [r.expires_at for r in changes.transfers if r.status == P_PENDING and r.expires_at]
            if expiries:
                soonest = min(expiries)
                next_expiry = soonest if next_expiry is None else min(next_expiry, soonest)
            last = first_ts + len(events) - 1
            changed = True
        return results, last, next_expiry, changed

    async def _run_accounts(
        self, conn: Conn, events: Sequence[tb.Account], first_ts: int
    ) -> tuple[list[tuple[int, int]], Changes]:
        await self._ensure_accounts(conn, {a.id for a in events})
        imports = None
        if int(events[0].flags) & tb.AccountFlags.IMPORTED:
            imports = await store.load_account_imports(conn, [a.timestamp for a in events])
        changes = Changes()
        results = AccountBatch(events, self._accounts, changes, imports).run(first_ts)
        return results, changes

    async def _run_transfers(
        self, conn: Conn, events: Sequence[tb.Transfer], first_ts: int
    ) -> tuple[list[tuple[int, int]], Changes]:
        ids = [t.id for t in events]
        existing = await store.load_transfers_for_batch(conn, ids + [t.pending_id for t in events])
        burned = await store.load_burned(conn, ids)
        account_ids = {t.debit_account_id for t in events} | {t.credit_account_id for t in events}
        for p in existing.values():
            if p.flags & T_PENDING:
                account_ids.add(p.dr)
                account_ids.add(p.cr)
        await self._ensure_accounts(conn, account_ids)
        imports = None
        if int(events[0].flags) & T_IMPORTED:
            imports = await store.load_transfer_imports(conn, [t.timestamp for t in events])
        changes = Changes()
        batch = TransferBatch(events, self._accounts, existing, burned, changes, imports)
        return batch.run(first_ts), changes

    async def _pulse_if_due(self) -> None:
        """Reads see expired reservations released, as on a cluster whose pulse has run."""
        if self._readonly:
            return
        if self._next_expiry is not None and self._next_expiry <= time.time_ns():
            await self._write((), transfers=None)

    # Reads: straight from the database, committed state only.

    async def lookup_accounts(self, ids: list[int]) -> list[tb.Account]:
        checks.check_ids(ids, self._batch_max)
        if not ids:
            return []
        await self._pulse_if_due()
        keys = [i & U128_MAX for i in ids]
        async with self._pool.acquire() as conn:
            records = await conn.fetch(q.LOOKUP_ACCOUNTS, keys)
        found = {r[0]: store.account_from_record(r).to_tb() for r in records}
        return [found[i] for i in keys if i in found]

    async def lookup_transfers(self, ids: list[int]) -> list[tb.Transfer]:
        checks.check_ids(ids, self._batch_max)
        if not ids:
            return []
        keys = [i & U128_MAX for i in ids]
        async with self._pool.acquire() as conn:
            records = await conn.fetch(q.LOOKUP_TRANSFERS, keys)
        found = {r[0]: store.transfer_from_record(r).to_tb() for r in records}
        return [found[i] for i in keys if i in found]

    async def _account_transfer_records(self, f: tb.AccountFilter) -> list[asyncpg.Record]:
        flags = int(f.flags)
        sql = _ACCOUNT_TRANSFERS[
            (
                bool(flags & tb.AccountFilterFlags.DEBITS),
                bool(flags & tb.AccountFilterFlags.CREDITS),
                bool(flags & tb.AccountFilterFlags.REVERSED),
            )
        ]
        async with self._pool.acquire() as conn:
            return await conn.fetch(
                sql,
                f.account_id,
                f.user_data_128,
                f.user_data_64,
                f.user_data_32,
                f.code,
                f.timestamp_min,
                f.timestamp_max or TS_MAX,
                f.limit,
            )

    async def get_account_transfers(self, filter: tb.AccountFilter) -> list[tb.Transfer]:  # noqa: A002
        checks.check_account_filter(filter)
        if not checks.account_filter_valid(filter):
            return []
        records = await self._account_transfer_records(filter)
        return [store.transfer_from_record(r).to_tb() for r in records]

    async def get_account_balances(self, filter: tb.AccountFilter) -> list[tb.AccountBalance]:  # noqa: A002
        checks.check_account_filter(filter)
        if not checks.account_filter_valid(filter):
            return []
        # Only for an existing account with flags.history.
        async with self._pool.acquire() as conn:
            records = await conn.fetch(q.LOOKUP_ACCOUNTS, [filter.account_id])
        if not records or not records[0][10] & A_HISTORY:
            return []
        account_id = filter.account_id
        balances: list[tb.AccountBalance] = []
        for r in await self._account_transfer_records(filter):
            base = 13 if r[1] == account_id else 17
            balances.append(
                tb.AccountBalance(
                    debits_pending=int(r[base]),
                    debits_posted=int(r[base + 1]),
                    credits_pending=int(r[base + 2]),
                    credits_posted=int(r[base + 3]),
                    timestamp=r[12],
                )
            )
        return balances

    async def _query(self, sql_asc: str, sql_desc: str, f: tb.QueryFilter) -> list[asyncpg.Record]:
        sql = sql_desc if int(f.flags) & tb.QueryFilterFlags.REVERSED else sql_asc
        async with self._pool.acquire() as conn:
            return await conn.fetch(
                sql,
                f.user_data_128,
                f.user_data_64,
                f.user_data_32,
                f.ledger,
                f.code,
                f.timestamp_min,
                f.timestamp_max or TS_MAX,
                f.limit,
            )

    async def query_accounts(self, filter: tb.QueryFilter) -> list[tb.Account]:  # noqa: A002
        checks.check_query_filter(filter)
        if not checks.query_filter_valid(filter):
            return []
        await self._pulse_if_due()
        records = await self._query(q.QUERY_ACCOUNTS, q.QUERY_ACCOUNTS_REVERSED, filter)
        return [store.account_from_record(r).to_tb() for r in records]

    async def query_transfers(self, filter: tb.QueryFilter) -> list[tb.Transfer]:  # noqa: A002
        checks.check_query_filter(filter)
        if not checks.query_filter_valid(filter):
            return []
        records = await self._query(q.QUERY_TRANSFERS, q.QUERY_TRANSFERS_REVERSED, filter)
        return [store.transfer_from_record(r).to_tb() for r in records]
