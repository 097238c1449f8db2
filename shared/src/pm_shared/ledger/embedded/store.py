"""PostgreSQL I/O of the embedded ledger: codecs, loading what a request needs, persisting its changes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import asyncpg

from pm_shared.db import Conn
from pm_shared.ledger.embedded import queries as q
from pm_shared.ledger.embedded.batch import ImportContext
from pm_shared.ledger.embedded.model import P_NONE, TS_MAX, AccountRow, Changes, TransferRow

_NO_SNAPSHOT = (None, None, None, None)


def _uuid_encode(value: int) -> bytes:
    return value.to_bytes(16, "big")


def _uuid_decode(data: bytes) -> int:
    return int.from_bytes(data, "big")


async def init_connection(conn: asyncpg.Connection[Any]) -> None:
    """Map `uuid` to and from Python ints (u128, big-endian, so uuid order is numeric order)."""
    await conn.set_type_codec(
        "uuid", encoder=_uuid_encode, decoder=_uuid_decode, schema="pg_catalog", format="binary"
    )


def account_from_record(r: asyncpg.Record) -> AccountRow:
    return AccountRow(
        r[0],
        int(r[1]),
        int(r[2]),
        int(r[3]),
        int(r[4]),
        r[5],
        int(r[6]),
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
    )


def transfer_from_record(r: asyncpg.Record) -> TransferRow:
    """A row of the 13 transfer columns, optionally followed by pending_status and expires_at."""
    row = TransferRow(
        r[0],
        r[1],
        r[2],
        int(r[3]),
        r[4],
        r[5],
        int(r[6]),
        r[7],
        r[8],
        r[9],
        r[10],
        r[11],
        r[12],
    )
    if len(r) > 13:
        row.status = r[13] or P_NONE
        row.expires_at = r[14] or 0
    return row


async def last_timestamp(conn: Conn) -> int:
    value: int = await conn.fetchval(q.SELECT_LAST_TIMESTAMP)
    return value


async def next_expiry(conn: Conn) -> int | None:
    value: int | None = await conn.fetchval(q.SELECT_NEXT_EXPIRY)
    return value


async def load_accounts(conn: Conn, ids: list[int], into: dict[int, AccountRow]) -> None:
    for r in await conn.fetch(q.SELECT_ACCOUNTS, ids):
        into[r[0]] = account_from_record(r)


async def load_transfers_for_batch(conn: Conn, ids: list[int]) -> dict[int, TransferRow]:
    return {r[0]: transfer_from_record(r) for r in await conn.fetch(q.SELECT_TRANSFERS_FOR_BATCH, ids)}


async def load_burned(conn: Conn, ids: list[int]) -> set[int]:
    return {r[0] for r in await conn.fetch(q.SELECT_BURNED, ids)}


async def load_due(conn: Conn, now: int) -> list[TransferRow]:
    return [transfer_from_record(r) for r in await conn.fetch(q.SELECT_DUE_PENDINGS, now)]


def _in_range(timestamps: list[int]) -> list[int]:
    # Out-of-range timestamps fail the batch-level checks before they are ever compared.
    return [ts for ts in timestamps if 1 <= ts <= TS_MAX]


async def load_transfer_imports(conn: Conn, timestamps: list[int]) -> ImportContext:
    """What an imported create_transfers batch with these user timestamps."""
    timestamps = _in_range(timestamps)
    return ImportContext(
        max_transfer_timestamp=await conn.fetchval(q.SELECT_MAX_TRANSFER_TIMESTAMP),
        account_timestamps={r[0] for r in await conn.fetch(q.SELECT_ACCOUNT_TIMESTAMPS, timestamps)},
    )


async def load_account_imports(conn: Conn, timestamps: list[int]) -> ImportContext:
    """What an imported create_accounts batch with these user timestamps."""
    timestamps = _in_range(timestamps)
    return ImportContext(
        max_account_timestamp=await conn.fetchval(q.SELECT_MAX_ACCOUNT_TIMESTAMP),
        transfer_timestamps={r[0] for r in await conn.fetch(q.SELECT_TRANSFER_TIMESTAMPS, timestamps)},
    )


def _transfer_records(rows: Iterable[TransferRow]) -> list[tuple[Any, ...]]:
    return [
        (
            r.id,
            r.dr,
            r.cr,
            r.amount,
            r.pending_id,
            r.ud128,
            r.ud64,
            r.ud32,
            r.timeout,
            r.ledger,
            r.code,
            r.flags,
            r.timestamp,
            r.status or None,
            r.expires_at or None,
            *(r.dr_snapshot or _NO_SNAPSHOT),
            *(r.cr_snapshot or _NO_SNAPSHOT),
        )
        for r in rows
    ]


async def persist(conn: Conn, changes: Changes) -> None:
    """Write one request's changes (inside the caller's transaction)."""
    if changes.accounts:
        await conn.copy_records_to_table(
            "accounts",
            schema_name="ledger",
            columns=q.ACCOUNT_COLUMNS,
            records=[
                (a.id, 0, 0, 0, 0, a.ud128, a.ud64, a.ud32, a.ledger, a.code, a.flags, a.timestamp)
                for a in changes.accounts
            ],
        )
    new_ids: set[int] = set()
    if changes.transfers:
        new_ids = {r.id for r in changes.transfers}
        await conn.copy_records_to_table(
            "transfers",
            schema_name="ledger",
            columns=q.TRANSFER_COLUMNS,
            records=_transfer_records(changes.transfers),
        )
    if changes.burned:
        await conn.execute(q.INSERT_BURNED, changes.burned)
    if changes.dirty_accounts:
        dirty = changes.dirty_accounts.values()
        await conn.execute(
            q.UPDATE_ACCOUNT_BALANCES,
            [a.id for a in dirty],
            [a.dp for a in dirty],
            [a.dpo for a in dirty],
            [a.cp for a in dirty],
            [a.cpo for a in dirty],
            [a.flags for a in dirty],
        )
    pendings = [p for p in changes.dirty_pendings.values() if p.id not in new_ids]
    if pendings:
        await conn.execute(q.UPDATE_PENDING_STATUS, [p.id for p in pendings], [p.status for p in pendings])
