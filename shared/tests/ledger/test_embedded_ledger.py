"""`EmbeddedLedger` through PostgreSQL: state persists and is shared across instances, a failed request
leaves no trace in a cache; queries, client-side checks, expiry, the sync twin, read-only instances,
concurrent writers, imported events; and the pure engine and PostgreSQL agree on random batches.

Expected statuses are TigerBeetle 0.17.9's (see docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio
import tigerbeetle as tb

from pm_shared.ledger import open_ledger_sync
from pm_shared.ledger.api import Ledger, LedgerSync
from pm_shared.ledger.embedded import EmbeddedLedger, ReadOnlyLedgerError, store
from pm_shared.ledger.embedded.model import Changes

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer

S = tb.CreateTransferStatus
AS = tb.CreateAccountStatus
F = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX


@pytest_asyncio.fixture
async def ledger(database_url: str) -> AsyncIterator[EmbeddedLedger]:
    opened = await EmbeddedLedger.open(database_url)
    try:
        yield opened
    finally:
        await opened.close()


async def _open(ledger: EmbeddedLedger, n: int = 1, **fields: Any) -> list[int]:
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    ids = [tb.id() for _ in range(n)]
    results = await ledger.create_accounts([tb.Account(id=i, **fields) for i in ids])
    assert [r.status for r in results] == [AS.CREATED] * n
    return ids


async def _bal(ledger: EmbeddedLedger, account_id: int) -> tuple[int, int, int, int]:
    (a,) = await ledger.lookup_accounts([account_id])
    return (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)


def _xfer(dr: int, cr: int, amount: int = 0, **fields: Any) -> tb.Transfer:
    """A transfer with a fresh `tb.id()` (the database outlives the test), on ledger 1, code 1 by default."""
    fields.setdefault("id", tb.id())
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    return tb.Transfer(debit_account_id=dr, credit_account_id=cr, amount=amount, **fields)


def _filter(account_id: int, **kw: Any) -> tb.AccountFilter:
    values: dict[str, Any] = {
        "account_id": account_id,
        "user_data_128": 0,
        "user_data_64": 0,
        "user_data_32": 0,
        "code": 0,
        "timestamp_min": 0,
        "timestamp_max": 0,
        "limit": 100,
        "flags": tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS,
    }
    values.update(kw)
    return tb.AccountFilter(**values)


async def test_round_trip_persists_across_instances(
    ledger: EmbeddedLedger, database_url: str, resolve: MakeTransfer
) -> None:
    (a,) = await _open(ledger, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.HISTORY)
    b, f = await _open(ledger, 2)
    t1, p = tb.id(), tb.id()
    results = await ledger.create_transfers(
        [
            _xfer(f, a, 100, id=t1, user_data_128=42),
            _xfer(a, b, 30, id=p, flags=F.PENDING),
            _xfer(a, b, 80),
            resolve(p, F.POST_PENDING_TRANSFER, 20, id=tb.id()),
        ]
    )
    assert [r.status for r in results] == [S.CREATED, S.CREATED, S.EXCEEDS_CREDITS, S.CREATED]
    burned = results[2]
    assert await _bal(ledger, a) == (0, 20, 0, 100)
    # A second instance (another process, in production) sees the committed state and the burned id.
    other = await EmbeddedLedger.open(database_url)
    try:
        assert (await other.create_transfers([_xfer(f, a, 100, id=t1, user_data_128=42)]))[
            0
        ].status == S.EXISTS
        assert await _bal(other, a) == (0, 20, 0, 100)
        more = await other.create_transfers([_xfer(f, a, 5)])
        assert more[0].status == S.CREATED and more[0].timestamp > burned.timestamp
    finally:
        await other.close()
    # The first instance's cache must notice the other writer.
    assert [r.status for r in await ledger.create_transfers([_xfer(a, b, 85)])] == [S.CREATED]
    assert await _bal(ledger, a) == (0, 105, 0, 105)
    lookups = await ledger.lookup_transfers([t1, 0, t1, p])
    assert [t.id for t in lookups] == [t1, t1, p]
    balances = await ledger.get_account_balances(_filter(a))
    assert [(x.debits_pending, x.debits_posted, x.credits_posted) for x in balances] == [
        (0, 0, 100),
        (30, 0, 100),
        (0, 20, 100),
        (0, 20, 105),
        (0, 105, 105),
    ]
    assert await ledger.get_account_balances(_filter(b)) == []  # no history flag
    q = tb.QueryFilter(
        user_data_128=42,
        user_data_64=0,
        user_data_32=0,
        ledger=0,
        code=0,
        timestamp_min=0,
        timestamp_max=0,
        limit=10,
        flags=tb.QueryFilterFlags.NONE,
    )
    assert [t.id for t in await ledger.query_transfers(q)] == [t1]


async def test_account_transfers_filters_and_order(ledger: EmbeddedLedger) -> None:
    a1, a2 = await _open(ledger, 2)
    ids = [tb.id() for _ in range(4)]
    await ledger.create_transfers(
        [
            _xfer(a1, a2, 10, id=ids[0], code=1),
            _xfer(a2, a1, 11, id=ids[1], code=2),
            _xfer(a1, a2, 12, id=ids[2], code=1),
            _xfer(a2, a1, 13, id=ids[3], code=2),
        ]
    )
    got = await ledger.get_account_transfers(_filter(a1))
    assert [t.id for t in got] == ids
    ts = [t.timestamp for t in got]
    DR, CR, REV = tb.AccountFilterFlags.DEBITS, tb.AccountFilterFlags.CREDITS, tb.AccountFilterFlags.REVERSED
    cases: list[tuple[dict[str, Any], list[int]]] = [
        ({"limit": 2}, ids[:2]),
        ({"flags": DR | CR | REV}, ids[::-1]),
        ({"flags": DR}, [ids[0], ids[2]]),
        ({"flags": CR | REV}, [ids[3], ids[1]]),
        ({"timestamp_min": ts[1], "timestamp_max": ts[2]}, ids[1:3]),
        ({"code": 2}, [ids[1], ids[3]]),
        ({"flags": REV}, []),
        ({"timestamp_min": ts[2], "timestamp_max": ts[1]}, []),
        ({"limit": 0}, []),
        ({"account_id": 0}, []),
        ({"account_id": tb.id()}, []),
        ({"flags": DR | 8}, []),
    ]
    for kw, expected in cases:
        f = _filter(kw.pop("account_id", a1), **kw)
        assert [t.id for t in await ledger.get_account_transfers(f)] == expected, kw
    with pytest.raises(tb.TooMuchDataError):
        await ledger.get_account_transfers(_filter(a1, limit=8190))
    assert len(await ledger.get_account_transfers(_filter(a1, limit=8189))) == 4


async def test_client_side_checks(ledger: EmbeddedLedger, database_url: str) -> None:
    a, b = await _open(ledger, 2)
    with pytest.raises(tb.IntegerOverflowError):
        await ledger.create_transfers([_xfer(a, b, -1)])
    with pytest.raises(tb.IntegerOverflowError):
        await ledger.create_transfers([_xfer(a, b, 1 << 128)])
    with pytest.raises(tb.IntegerOverflowError):
        await ledger.create_accounts([tb.Account(id=tb.id(), ledger=1, code=1 << 16)])
    small = await EmbeddedLedger.open(database_url, batch_max=3)
    try:
        with pytest.raises(tb.TooMuchDataError):
            await small.create_transfers([_xfer(a, b, 1) for _ in range(4)])
        with pytest.raises(tb.TooMuchDataError):
            await small.lookup_accounts([a] * 4)
    finally:
        await small.close()
    assert await ledger.create_transfers([]) == []
    assert await ledger.lookup_accounts([]) == []
    assert await _bal(ledger, a) == (0, 0, 0, 0)


async def test_chain_rollback_is_not_persisted(ledger: EmbeddedLedger) -> None:
    (a1,) = await _open(ledger, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    a2, f = await _open(ledger, 2)
    await ledger.create_transfers([_xfer(f, a1, 20)])
    t1, t2, t3 = tb.id(), tb.id(), tb.id()
    results = await ledger.create_transfers(
        [
            _xfer(a1, a2, 15, id=t1, flags=F.LINKED),
            _xfer(a1, a2, 10, id=t2, flags=F.LINKED | F.PENDING),
            _xfer(a1, a2, 1, id=t3),
        ]
    )
    assert [r.status for r in results] == [S.LINKED_EVENT_FAILED, S.EXCEEDS_CREDITS, S.LINKED_EVENT_FAILED]
    assert await ledger.lookup_transfers([t1, t2, t3]) == []
    assert await _bal(ledger, a1) == (0, 0, 0, 20)
    again = await ledger.create_transfers([_xfer(a1, a2, 1, id=t) for t in (t1, t2, t3)])
    assert [r.status for r in again] == [S.CREATED, S.ID_ALREADY_FAILED, S.CREATED]


async def test_expiry_through_postgres(ledger: EmbeddedLedger, resolve: MakeTransfer) -> None:
    a, b = await _open(ledger, 2)
    (d,) = await _open(ledger)
    p1, pc = tb.id(), tb.id()
    await ledger.create_transfers(
        [
            _xfer(a, b, 10, id=p1, flags=F.PENDING, timeout=1),
            _xfer(a, b, 20, flags=F.PENDING),
            _xfer(b, d, 0, id=pc, flags=F.PENDING | F.CLOSING_CREDIT, timeout=1),
        ]
    )
    assert await _bal(ledger, a) == (30, 0, 0, 0)
    await asyncio.sleep(1.2)
    assert await _bal(ledger, a) == (20, 0, 0, 0)
    (acct_d,) = await ledger.lookup_accounts([d])
    assert not acct_d.flags & AF.CLOSED
    post = await ledger.create_transfers([resolve(p1, F.POST_PENDING_TRANSFER, MAX, id=tb.id())])
    assert post[0].status == S.PENDING_TRANSFER_EXPIRED
    assert (await ledger.lookup_transfers([p1]))[0].flags == F.PENDING


def test_sync_twin(database_url: str) -> None:
    with open_ledger_sync(_embedded(database_url)) as ledger:
        ids = [tb.id(), tb.id()]
        results = ledger.create_accounts([tb.Account(id=i, ledger=1, code=1) for i in ids])
        assert [r.status for r in results] == [AS.CREATED, AS.CREATED]
        t = tb.Transfer(
            id=tb.id(), debit_account_id=ids[0], credit_account_id=ids[1], amount=3, ledger=1, code=1
        )
        assert ledger.create_transfers([t])[0].status == S.CREATED
        assert [x.debits_posted for x in ledger.lookup_accounts(ids)] == [3, 0]


async def test_readonly_instance_reads_but_never_writes(ledger: EmbeddedLedger, database_url: str) -> None:
    (a,) = await _open(ledger)
    async with await EmbeddedLedger.open(database_url, readonly=True) as reader:
        assert [x.id for x in await reader.lookup_accounts([a])] == [a]
        with pytest.raises(ReadOnlyLedgerError):
            await reader.create_accounts([tb.Account(id=tb.id(), ledger=1, code=1)])


async def test_failed_request_leaves_no_trace_in_the_cache(
    ledger: EmbeddedLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = await _open(ledger, 2)

    async def fail(conn: Any, changes: Changes) -> None:
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(store, "persist", fail)
    with pytest.raises(RuntimeError):
        await ledger.create_transfers([_xfer(a, b, 5)])
    monkeypatch.undo()
    assert await _bal(ledger, a) == (0, 0, 0, 0)
    # The engine had applied 5 to the cached account: it must not leak into the next request.
    assert (await ledger.create_transfers([_xfer(a, b, 7)]))[0].status == S.CREATED
    assert await _bal(ledger, a) == (0, 7, 0, 0)


async def test_concurrent_writers_serialise(ledger: EmbeddedLedger, database_url: str) -> None:
    (a,) = await _open(ledger, flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    b, f = await _open(ledger, 2)
    await ledger.create_transfers([_xfer(f, a, 300)])
    async with await EmbeddedLedger.open(database_url) as other:
        batches = [[_xfer(a, b, 1) for _ in range(50)] for _ in range(8)]
        outcomes = await asyncio.gather(
            *[(ledger if i % 2 else other).create_transfers(batch) for i, batch in enumerate(batches)]
        )
        statuses = [r.status for results in outcomes for r in results]
        # The limit holds across both writers: exactly 300 of the 400 transfers fit.
        assert statuses.count(S.CREATED) == 300
        assert statuses.count(S.EXCEEDS_CREDITS) == 100
        timestamps = [r.timestamp for results in outcomes for r in results]
        assert len(set(timestamps)) == len(timestamps)
        assert await _bal(other, a) == (0, 300, 0, 300)
        assert await _bal(ledger, b) == (0, 0, 0, 300)


async def test_imported_events_through_postgres(ledger: EmbeddedLedger) -> None:
    # Timestamps between the newest object and now; the batch decides by its first event.
    (anchor,) = await _open(ledger)
    (acct,) = await ledger.lookup_accounts([anchor])
    base = acct.timestamp
    a, b = tb.id(), tb.id()
    imp = AF.IMPORTED
    results = await ledger.create_accounts(
        [
            tb.Account(id=a, ledger=1, code=1, flags=imp, timestamp=base + 1),
            tb.Account(id=b, ledger=1, code=1, flags=imp, timestamp=base + 1),
            tb.Account(id=b, ledger=1, code=1, flags=imp, timestamp=base + 2),
            tb.Account(id=tb.id(), ledger=1, code=1, flags=imp, timestamp=1 << 63),
        ]
    )
    assert [r.status for r in results] == [
        AS.CREATED,
        AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        AS.CREATED,
        AS.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
    ]
    assert results[0].timestamp == base + 1
    t = tb.id()
    transfers = await ledger.create_transfers(
        [
            _xfer(a, b, 5, id=t, flags=F.IMPORTED, timestamp=base + 2),
            _xfer(a, b, 5, id=t, flags=F.IMPORTED, timestamp=base + 3),
            _xfer(a, b, 5, flags=F.IMPORTED, timestamp=base + 3),
            _xfer(a, b, 5),
        ]
    )
    assert [r.status for r in transfers] == [
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,  # base + 2 is b's timestamp
        S.CREATED,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,  # not after the transfer just imported
        S.IMPORTED_EVENT_EXPECTED,
    ]
    assert [x.timestamp for x in await ledger.lookup_transfers([t])] == [base + 3]


async def test_backends_satisfy_the_ledger_protocols(ledger: EmbeddedLedger, database_url: str) -> None:
    typed: Ledger = ledger
    assert typed is ledger
    with open_ledger_sync(_embedded(database_url)) as sync_ledger:
        typed_sync: LedgerSync = sync_ledger
        assert typed_sync.lookup_accounts([]) == []


def _random_batches(
    rng: random.Random, accounts: list[int], n_batches: int, size: int, resolve: MakeTransfer
) -> list[list[tb.Transfer]]:
    """Random create_transfers batches that reuse ids and reference earlier transfers as pending ids."""
    used: list[tb.Transfer] = []
    batches: list[list[tb.Transfer]] = []
    flag_pool = [
        F.LINKED,
        F.PENDING,
        F.BALANCING_DEBIT,
        F.BALANCING_CREDIT,
        F.CLOSING_DEBIT,
        F.CLOSING_CREDIT,
    ]
    weights = [0.15, 0.4, 0.1, 0.1, 0.01, 0.01]
    for _ in range(n_batches):
        batch: list[tb.Transfer] = []
        for _ in range(size):
            roll = rng.random()
            if used and roll < 0.15:
                old = rng.choice(used)
                tweak = rng.choice(["none", "amount", "flags"])
                amount = min(old.amount + 1, MAX) if tweak == "amount" else old.amount
                old_flags = old.flags ^ F.LINKED if tweak == "flags" else old.flags
                event = dataclasses.replace(old, amount=amount, flags=old_flags)
            elif used and roll < 0.4:
                pendings = [u for u in used if u.flags & F.PENDING]
                target = rng.choice(pendings if pendings and rng.random() < 0.9 else used)
                kind = F.POST_PENDING_TRANSFER if rng.random() < 0.6 else F.VOID_PENDING_TRANSFER
                amount = rng.choice([0, MAX, rng.randrange(0, 30)])
                resolve_flags = kind | (F.LINKED if rng.random() < 0.15 else 0)
                event = resolve(target.id, resolve_flags, amount, id=tb.id())
            else:
                # The last account (another ledger) only now and then.
                dr, cr = rng.sample(accounts if rng.random() < 0.05 else accounts[:-1], 2)
                new_flags = 0
                for flag, weight in zip(flag_pool, weights, strict=True):
                    if rng.random() < weight:
                        new_flags |= flag
                event = _xfer(dr, cr, rng.randrange(0, 25), flags=tb.TransferFlags(new_flags))
            batch.append(event)
            used.append(event)
        batches.append(batch)
    return batches


async def test_engine_in_memory_and_through_postgres_agree(
    ledger: EmbeddedLedger, engine: Engine, resolve: MakeTransfer
) -> None:
    """The store must load everything the engine can touch: a full-knowledge run gives the same results."""
    rng = random.Random(20261124)
    specs: list[dict[str, Any]] = [
        {"flags": AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.HISTORY},
        {"flags": AF.DEBITS_MUST_NOT_EXCEED_CREDITS},
        {"flags": AF.CREDITS_MUST_NOT_EXCEED_DEBITS},
        {"flags": AF.HISTORY},
        {},
        {},
        {"ledger": 2},
    ]
    accounts = [
        tb.Account(id=tb.id(), ledger=s.get("ledger", 1), code=1, flags=s.get("flags", 0)) for s in specs
    ]
    assert engine.accounts_(accounts) == [AS.CREATED] * len(accounts)
    assert [r.status for r in await ledger.create_accounts(accounts)] == [AS.CREATED] * len(accounts)
    ids = [a.id for a in accounts]
    funding = [_xfer(ids[4], ids[i], 40) for i in (0, 1, 3)] + [_xfer(ids[2], ids[5], 40)]
    assert engine.transfers_(funding) == [S.CREATED] * 4
    assert [r.status for r in await ledger.create_transfers(funding)] == [S.CREATED] * 4
    for batch in _random_batches(rng, ids, n_batches=25, size=40, resolve=resolve):
        expected = engine.transfers_(batch)
        got = [r.status for r in await ledger.create_transfers(batch)]
        assert got == expected
    stored = {a.id: a for a in await ledger.lookup_accounts(ids)}
    for account_id in ids:
        a = stored[account_id]
        balance = (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted)
        assert balance == engine.bal(account_id)
        assert a.flags == engine.accounts[account_id].flags
    rows = list(engine.accounts.values())
    assert sum(r.dp for r in rows) == sum(r.cp for r in rows)
    assert sum(r.dpo for r in rows) == sum(r.cpo for r in rows)


def _embedded(dsn: str) -> str:
    return "embedded+" + dsn
