"""The embedded ledger engine: the pure state machine (fast), then a few runs through PostgreSQL.

Expected statuses are TigerBeetle 0.17.9's (see docs/ledger.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
import tigerbeetle as tb

from pm_shared.ledger import open_ledger_sync
from pm_shared.ledger.api import Ledger, LedgerSync
from pm_shared.ledger.embedded import EmbeddedLedger, ReadOnlyLedgerError, store
from pm_shared.ledger.embedded.accounts import create_accounts
from pm_shared.ledger.embedded.batch import CREATED, ImportContext
from pm_shared.ledger.embedded.engine import create_transfers, expire
from pm_shared.ledger.embedded.model import P_PENDING, AccountRow, Changes, TransferRow

S = tb.CreateTransferStatus
AS = tb.CreateAccountStatus
F = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX

_ids = itertools.count(1000)


def nid() -> int:
    return next(_ids)


class Engine:
    """The pure engine over in-memory dicts, with a fake clock."""

    def __init__(self) -> None:
        self.accounts: dict[int, AccountRow] = {}
        self.transfers: dict[int, TransferRow] = {}
        self.burned: set[int] = set()
        self.last_ts = 1_000_000

    def _first_ts(self) -> int:
        return self.last_ts + 1

    def accounts_(self, events: list[tb.Account], imports: ImportContext | None = None) -> list[Any]:
        results, changes = create_accounts(events, self.accounts, self._first_ts(), imports)
        self.last_ts = max(self.last_ts, changes.last_timestamp)
        return [tb.CreateAccountStatus(s) for _, s in results]

    def transfers_full(
        self, events: list[tb.Transfer], imports: ImportContext | None = None
    ) -> tuple[list[tuple[int, int]], Changes]:
        results, changes = create_transfers(
            events, self.accounts, self.transfers, self.burned, self._first_ts(), imports
        )
        self.last_ts = max(self.last_ts, changes.last_timestamp)
        return results, changes

    def transfers_(self, events: list[tb.Transfer], imports: ImportContext | None = None) -> list[Any]:
        return [tb.CreateTransferStatus(s) for _, s in self.transfers_full(events, imports)[0]]

    def open(self, n: int = 1, **fields: Any) -> list[int]:
        fields.setdefault("ledger", 1)
        fields.setdefault("code", 1)
        ids = [nid() for _ in range(n)]
        assert self.accounts_([tb.Account(id=i, **fields) for i in ids]) == [AS.CREATED] * n
        return ids

    def bal(self, account_id: int) -> tuple[int, int, int, int]:
        a = self.accounts[account_id]
        return (a.dp, a.dpo, a.cp, a.cpo)


def xfer(dr: int, cr: int, amount: int = 0, **fields: Any) -> tb.Transfer:
    fields.setdefault("id", nid())
    fields.setdefault("ledger", 1)
    fields.setdefault("code", 1)
    return tb.Transfer(debit_account_id=dr, credit_account_id=cr, amount=amount, **fields)


def resolve(pending_id: int, flags: int, amount: int = 0, **fields: Any) -> tb.Transfer:
    fields.setdefault("id", nid())
    return tb.Transfer(pending_id=pending_id, flags=tb.TransferFlags(flags), amount=amount, **fields)


# Accounts.


def test_dense_results_and_consecutive_timestamps() -> None:
    e = Engine()
    a1, a2 = nid(), nid()
    results, _ = create_accounts(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a2, ledger=1, code=1), tb.Account(id=0)],
        e.accounts,
        500,
    )
    assert results == [(500, CREATED), (501, CREATED), (502, AS.ID_MUST_NOT_BE_ZERO)]
    again, _ = create_accounts([tb.Account(id=a1, ledger=1, code=1)], e.accounts, 900)
    assert again == [(500, AS.EXISTS)]  # exists carries the original timestamp


def test_account_validation_precedence_tc02() -> None:
    e = Engine()
    dc = AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS
    events = [
        tb.Account(id=0, ledger=0, code=0, timestamp=5),
        tb.Account(id=nid(), flags=tb.AccountFlags(1 << 6), ledger=0),
        tb.Account(id=0),
        tb.Account(id=MAX),
        tb.Account(id=nid(), flags=dc, debits_pending=1, ledger=0),
        tb.Account(id=nid(), debits_pending=1, credits_posted=1, ledger=0),
        tb.Account(id=nid(), credits_posted=1, ledger=0),
        tb.Account(id=nid(), ledger=0, code=0),
        tb.Account(id=nid(), ledger=1, code=0),
    ]
    assert e.accounts_(events) == [
        AS.TIMESTAMP_MUST_BE_ZERO,
        AS.RESERVED_FLAG,
        AS.ID_MUST_NOT_BE_ZERO,
        AS.ID_MUST_NOT_BE_INT_MAX,
        AS.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
        AS.DEBITS_PENDING_MUST_BE_ZERO,
        AS.CREDITS_POSTED_MUST_BE_ZERO,
        AS.LEDGER_MUST_NOT_BE_ZERO,
        AS.CODE_MUST_NOT_BE_ZERO,
    ]
    assert e.accounts == {}


def test_account_idempotency_order_tc03() -> None:
    e = Engine()
    (a,) = e.open(user_data_128=7, user_data_64=8, user_data_32=9)
    base = {"id": a, "user_data_128": 7, "user_data_64": 8, "user_data_32": 9, "ledger": 1, "code": 1}
    variants: list[dict[str, Any]] = [
        {},
        {"flags": AF.HISTORY},
        {"user_data_128": 70},
        {"user_data_64": 80},
        {"user_data_32": 90},
        {"ledger": 2},
        {"code": 2},
        {"ledger": 0, "code": 0},
        {"debits_posted": 5, "credits_pending": 3},
        {"flags": AF.DEBITS_MUST_NOT_EXCEED_CREDITS | AF.CREDITS_MUST_NOT_EXCEED_DEBITS},
        {"user_data_128": 70, "ledger": 2},
    ]
    assert e.accounts_([tb.Account(**{**base, **v}) for v in variants]) == [
        AS.EXISTS,
        AS.EXISTS_WITH_DIFFERENT_FLAGS,
        AS.EXISTS_WITH_DIFFERENT_USER_DATA_128,
        AS.EXISTS_WITH_DIFFERENT_USER_DATA_64,
        AS.EXISTS_WITH_DIFFERENT_USER_DATA_32,
        AS.EXISTS_WITH_DIFFERENT_LEDGER,
        AS.EXISTS_WITH_DIFFERENT_CODE,
        AS.EXISTS_WITH_DIFFERENT_LEDGER,
        AS.EXISTS,
        AS.EXISTS_WITH_DIFFERENT_FLAGS,
        AS.EXISTS_WITH_DIFFERENT_USER_DATA_128,
    ]


def test_linked_account_chains_tc04_tc05() -> None:
    e = Engine()
    a1, a2, a3, a4, a7 = (nid() for _ in range(5))
    L = AF.LINKED

    def acc(i: int, **kw: Any) -> tb.Account:
        kw.setdefault("ledger", 1)
        kw.setdefault("code", 1)
        return tb.Account(id=i, **kw)

    events = [
        acc(a7),
        acc(a1, flags=L),
        acc(a2, flags=L),
        acc(a1, flags=L),
        acc(a3),
        acc(a1),
        acc(a1, flags=L, code=2),
        acc(a2),
        acc(a2),
        acc(a3, flags=L),
        acc(a1, ledger=2),
        acc(a3, flags=L),
        acc(a4),
    ]
    LEF = AS.LINKED_EVENT_FAILED
    assert e.accounts_(events) == [
        AS.CREATED,
        *(LEF, LEF, AS.EXISTS, LEF),
        AS.CREATED,
        *(AS.EXISTS_WITH_DIFFERENT_FLAGS, LEF),
        AS.CREATED,
        *(LEF, AS.EXISTS_WITH_DIFFERENT_LEDGER),
        *(AS.CREATED, AS.CREATED),
    ]
    assert set(e.accounts) == {a1, a2, a3, a4, a7}
    assert e.accounts[a3].flags == AF.LINKED  # the linked bit is stored

    b = [nid() for _ in range(6)]
    open_chain = [acc(b[0], flags=L), acc(b[1], flags=L), acc(b[2]), acc(b[3], flags=L), acc(b[4], flags=L)]
    assert e.accounts_(open_chain) == [AS.CREATED] * 3 + [LEF, AS.LINKED_EVENT_CHAIN_OPEN]
    assert e.accounts_([acc(b[5], flags=L)]) == [AS.LINKED_EVENT_CHAIN_OPEN]
    assert not {b[3], b[4], b[5]} & set(e.accounts)


def test_rolled_back_pair_timestamps_differ_by_one_tc45() -> None:
    e = Engine()
    x, y = e.open(2)
    results, _ = e.transfers_full([xfer(x, y, 1, ledger=0, flags=F.LINKED), xfer(x, y, 1, flags=F.LINKED)])
    assert [s for _, s in results] == [S.LEDGER_MUST_NOT_BE_ZERO, S.LINKED_EVENT_CHAIN_OPEN]
    assert results[1][0] - results[0][0] == 1


# Transfers.


def test_transfer_validation_precedence_and_burned_ids_tc07() -> None:
    e = Engine()
    a, b = e.open(2)
    (c,) = e.open(ledger=2)
    t1, t2, t3 = nid(), nid(), nid()
    base = xfer(a, b, 1, id=t3)
    variants: list[dict[str, Any]] = [
        {"timestamp": 1},
        {"flags": 1 << 9},
        {"id": 0},
        {"id": MAX},
        {"debit_account_id": 0},
        {"debit_account_id": MAX},
        {"credit_account_id": 0},
        {"credit_account_id": MAX},
        {"credit_account_id": a},
        {"pending_id": 5},
        {"timeout": 5},
        {"flags": F.CLOSING_DEBIT},
        {"ledger": 0},
        {"code": 0},
        {"id": t1, "debit_account_id": nid()},
        {"id": t2, "credit_account_id": nid()},
        {"credit_account_id": c},
        {"ledger": 2},
        {},
    ]
    fields = ("id", "debit_account_id", "credit_account_id", "amount", "ledger", "code")
    events = [tb.Transfer(**{**{k: getattr(base, k) for k in fields}, **v}) for v in variants]
    assert e.transfers_(events) == [
        S.TIMESTAMP_MUST_BE_ZERO,
        S.RESERVED_FLAG,
        S.ID_MUST_NOT_BE_ZERO,
        S.ID_MUST_NOT_BE_INT_MAX,
        S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        S.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO,
        S.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX,
        S.ACCOUNTS_MUST_BE_DIFFERENT,
        S.PENDING_ID_MUST_BE_ZERO,
        S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        S.CLOSING_TRANSFER_MUST_BE_PENDING,
        S.LEDGER_MUST_NOT_BE_ZERO,
        S.CODE_MUST_NOT_BE_ZERO,
        S.DEBIT_ACCOUNT_NOT_FOUND,
        S.CREDIT_ACCOUNT_NOT_FOUND,
        S.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER,
        S.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS,
        S.CREATED,
    ]
    assert e.transfers_([xfer(a, b, 1, id=t1), xfer(a, b, 1, id=t2)]) == [S.ID_ALREADY_FAILED] * 2
    assert e.burned == {t1, t2}


def test_limits_and_pessimistic_pending_tc09_tc11() -> None:
    e = Engine()
    (a,) = e.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    b, f = e.open(2)
    t1 = nid()
    assert e.transfers_([xfer(a, b, 1, id=t1)]) == [S.EXCEEDS_CREDITS]
    assert e.transfers_([xfer(f, a, 100)]) == [S.CREATED]
    assert e.transfers_([xfer(a, b, 1, id=t1)]) == [S.ID_ALREADY_FAILED]
    events = [xfer(a, b, 70), xfer(a, b, 50, flags=F.PENDING), xfer(a, b, 30, flags=F.PENDING), xfer(a, b, 1)]
    assert e.transfers_(events) == [S.CREATED, S.EXCEEDS_CREDITS, S.CREATED, S.EXCEEDS_CREDITS]
    assert e.bal(a) == (30, 70, 0, 100)
    # Incoming pending credits are not spendable.
    (c,) = e.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    assert e.transfers_([xfer(f, c, 1)]) == [S.EXCEEDS_DEBITS]


def test_transfer_idempotency_order_tc12() -> None:
    e = Engine()
    x1, x2, x3 = e.open(3)
    t = nid()
    orig = {"id": t, "user_data_128": 1, "user_data_64": 2, "user_data_32": 3, "code": 4}
    first, _ = e.transfers_full([xfer(x1, x2, 10, **orig)])
    variants: list[tuple[tuple[int, int, int], dict[str, Any]]] = [
        ((x1, x2, 10), {}),
        ((x1, x2, 10), {"flags": F.PENDING}),
        ((x1, x2, 10), {"pending_id": 5}),
        ((x1, x2, 11), {"timeout": 5}),
        ((x3, x2, 10), {}),
        ((x1, nid(), 10), {}),
        ((x1, x2, 11), {"user_data_128": 9}),
        ((x1, x2, 10), {"user_data_128": 9}),
        ((x1, x2, 10), {"user_data_64": 9}),
        ((x1, x2, 10), {"user_data_32": 9}),
        ((x1, x2, 10), {"ledger": 0, "code": 0}),
        ((x1, x2, 10), {"code": 5}),
        ((x1, x2, 10), {"timestamp": 1}),
    ]
    results, _ = e.transfers_full([xfer(*args, **{**orig, **v}) for args, v in variants])
    assert [s for _, s in results] == [
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_FLAGS,
        S.EXISTS_WITH_DIFFERENT_PENDING_ID,
        S.EXISTS_WITH_DIFFERENT_TIMEOUT,
        S.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID,
        S.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS_WITH_DIFFERENT_USER_DATA_128,
        S.EXISTS_WITH_DIFFERENT_USER_DATA_64,
        S.EXISTS_WITH_DIFFERENT_USER_DATA_32,
        S.EXISTS_WITH_DIFFERENT_LEDGER,
        S.EXISTS_WITH_DIFFERENT_CODE,
        S.TIMESTAMP_MUST_BE_ZERO,
    ]
    assert results[0][0] == first[0][0]
    assert e.bal(x1) == (0, 10, 0, 0)


def test_post_void_amounts_tc14_to_tc18() -> None:
    e = Engine()
    a, b = e.open(2)
    p = nid()
    assert e.transfers_([xfer(a, b, 100, id=p, code=7, flags=F.PENDING)]) == [S.CREATED]
    q = nid()
    assert e.transfers_([resolve(p, F.POST_PENDING_TRANSFER, MAX, id=q)]) == [S.CREATED]
    stored = e.transfers[q]
    assert (stored.dr, stored.cr, stored.ledger, stored.code, stored.amount) == (a, b, 1, 7, 100)
    assert e.transfers[p].amount == 100 and e.bal(a) == (0, 100, 0, 0)

    p2 = nid()
    e.transfers_([xfer(a, b, 100, id=p2, flags=F.PENDING)])
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    assert e.transfers_([resolve(p2, POST, 60), resolve(p2, POST, 10), resolve(p2, VOID)]) == [
        S.CREATED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]
    assert e.bal(a) == (0, 160, 0, 0)

    p3 = nid()
    e.transfers_([xfer(a, b, 100, id=p3, flags=F.PENDING)])
    assert e.transfers_([resolve(p3, POST, 0)]) == [S.CREATED]  # post 0 posts zero
    assert e.bal(a) == (0, 160, 0, 0)

    p4 = nid()
    e.transfers_([xfer(a, b, 100, id=p4, flags=F.PENDING)])
    v = nid()
    statuses = e.transfers_(
        [
            resolve(p4, VOID, 50),
            resolve(p4, VOID, 150),
            resolve(p4, VOID, 0, id=v),
            resolve(p4, POST, MAX),
            resolve(p4, VOID, 0, id=v),
            resolve(p4, VOID, 100, id=v),
            resolve(p4, VOID, 99, id=v),
            resolve(p4, POST, 101),
        ]
    )
    assert statuses == [
        S.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.CREATED,
        S.PENDING_TRANSFER_ALREADY_VOIDED,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    ]
    assert e.transfers[v].amount == 100 and e.bal(a) == (0, 160, 0, 0)


def test_post_void_precedence_tc19() -> None:
    e = Engine()
    a, b, c = e.open(3)
    p, n = nid(), nid()
    e.transfers_([xfer(a, b, 10, id=p, code=7, flags=F.PENDING), xfer(a, b, 1, id=n)])
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    q = nid()
    events = [
        resolve(p, POST | VOID),
        resolve(p, POST | F.PENDING),
        resolve(p, POST | F.BALANCING_DEBIT),
        resolve(p, VOID | F.CLOSING_CREDIT),
        resolve(0, POST),
        resolve(MAX, POST),
        resolve(q, POST, id=q),
        resolve(p, POST, timeout=1),
        resolve(n, POST),
        resolve(p, POST, debit_account_id=c),
        resolve(p, POST, credit_account_id=c),
        resolve(p, POST, ledger=2),
        resolve(p, POST, code=8),
        resolve(p, POST, 11),
        resolve(nid(), POST),
    ]
    assert e.transfers_(events) == [
        *[S.FLAGS_ARE_MUTUALLY_EXCLUSIVE] * 4,
        S.PENDING_ID_MUST_NOT_BE_ZERO,
        S.PENDING_ID_MUST_NOT_BE_INT_MAX,
        S.PENDING_ID_MUST_BE_DIFFERENT,
        S.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER,
        S.PENDING_TRANSFER_NOT_PENDING,
        S.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID,
        S.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID,
        S.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER,
        S.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.PENDING_TRANSFER_NOT_FOUND,
    ]
    e.transfers_([resolve(p, POST)])
    assert e.transfers_([resolve(p, POST, code=99), resolve(p, VOID, 11), resolve(p, VOID)]) == [
        S.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]


def test_post_idempotency_and_inheritance_tc20_tc21() -> None:
    e = Engine()
    a, b = e.open(2)
    POST = F.POST_PENDING_TRANSFER
    p1, p2, p3 = nid(), nid(), nid()
    e.transfers_(
        [
            xfer(a, b, 15, id=p1, flags=F.PENDING, user_data_128=11, user_data_64=12, user_data_32=13),
            xfer(a, b, 7, id=p2, flags=F.PENDING),
            xfer(a, b, 1, id=p3, flags=F.PENDING),
        ]
    )
    q1, q2, q3 = nid(), nid(), nid()
    assert e.transfers_([resolve(p1, POST, 13, id=q1)]) == [S.CREATED]
    assert (e.transfers[q1].ud128, e.transfers[q1].ud64, e.transfers[q1].ud32) == (11, 12, 13)
    assert e.transfers_([resolve(p1, POST, x, id=q1) for x in (14, MAX, 0, 13)]) == [
        *[S.EXISTS_WITH_DIFFERENT_AMOUNT] * 3,
        S.EXISTS,
    ]
    assert e.transfers_([resolve(p1, POST, 13, id=q1, user_data_128=99)]) == [
        S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    ]
    assert e.transfers_([resolve(p1, POST, 13, id=q1, user_data_128=11)]) == [S.EXISTS]
    e.transfers_([resolve(p2, POST, MAX, id=q2), resolve(p3, POST, 0, id=q3)])
    assert e.transfers_([resolve(p2, POST, x, id=q2) for x in (7, MAX, 8, 0)]) == [
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert e.transfers_([resolve(p3, POST, x, id=q3) for x in (0, 1)]) == [
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert [e.transfers[q].amount for q in (q1, q2, q3)] == [13, 7, 0]
    assert e.bal(a) == (0, 20, 0, 0)


def test_expiry_releases_and_reopens_tc22_tc31() -> None:
    e = Engine()
    a, b, d = e.open(3)
    p1, p2, pc = nid(), nid(), nid()
    e.transfers_(
        [
            xfer(a, b, 10, id=p1, flags=F.PENDING, timeout=1),
            xfer(a, b, 20, id=p2, flags=F.PENDING),
            xfer(b, d, 0, id=pc, flags=F.PENDING | F.CLOSING_CREDIT, timeout=1),
        ]
    )
    assert e.bal(a) == (30, 0, 0, 0) and e.accounts[d].flags & AF.CLOSED
    # Strict at resolution time even before any pulse.
    e.last_ts += 2 * 10**9
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    failed = nid()
    assert e.transfers_([resolve(p1, POST, MAX, id=failed), resolve(p1, VOID), resolve(p1, POST, 11)]) == [
        S.PENDING_TRANSFER_EXPIRED,
        S.PENDING_TRANSFER_EXPIRED,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    ]
    due = [t for t in e.transfers.values() if t.status == P_PENDING and 0 < t.expires_at <= e.last_ts]
    changes = Changes()
    expire(sorted(due, key=lambda t: (t.expires_at, t.timestamp)), e.accounts, changes)
    assert e.bal(a) == (20, 0, 0, 0)
    assert not e.accounts[d].flags & AF.CLOSED
    assert e.transfers_([resolve(p1, VOID)]) == [S.PENDING_TRANSFER_EXPIRED]
    assert e.transfers_([xfer(a, b, 1, id=failed)]) == [S.CREATED]  # expired is not transient


def test_balancing_tc23_to_tc26() -> None:
    e = Engine()
    (a1,) = e.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (a2,) = e.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    a3, f = e.open(2)
    e.transfers_(
        [xfer(f, a1, 10), xfer(a1, f, 1, flags=F.PENDING), xfer(a2, f, 10), xfer(f, a2, 2, flags=F.PENDING)]
    )
    assert e.bal(a1) == (1, 0, 0, 10) and e.bal(a2) == (0, 10, 2, 0)
    BDR, BCR = F.BALANCING_DEBIT, F.BALANCING_CREDIT
    ts = [nid() for _ in range(8)]
    events = [
        xfer(a1, a3, 3, id=ts[0], flags=BDR),
        xfer(a1, a3, 13, id=ts[1], flags=BDR),
        xfer(a3, a2, 3, id=ts[2], flags=BCR),
        xfer(a3, a2, 13, id=ts[3], flags=BCR),
        xfer(a1, a3, 1, id=ts[4], flags=BDR),
        xfer(a1, a3, 1, id=ts[5], flags=BDR),
        xfer(a3, a2, 1, id=ts[6], flags=BCR),
        xfer(a3, a2, 1, id=ts[7], flags=BCR),
    ]
    assert e.transfers_(events) == [S.CREATED] * 8
    assert [e.transfers[t].amount for t in ts] == [3, 6, 3, 5, 0, 0, 0, 0]
    retries = [xfer(a1, a3, x, id=ts[0], flags=BDR) for x in (2, 0, 3, 4)]
    retries += [xfer(a1, a3, 6, id=ts[1], flags=BDR), xfer(a1, a3, 0, id=ts[1], flags=BDR)]
    assert e.transfers_(retries) == [
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert e.bal(a1) == (1, 9, 0, 10) and e.bal(a2) == (0, 10, 2, 8)
    # One-sided balancing still hits the other side's limit.
    (d,) = e.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (c,) = e.open()
    e.transfers_([xfer(f, d, 4), xfer(c, f, 5)])
    assert e.transfers_([xfer(d, c, 10, flags=BCR), xfer(d, c, 10, flags=BDR)]) == [
        S.EXCEEDS_CREDITS,
        S.CREATED,
    ]
    # Balancing without limit flags clamps to the net balance.
    (empty,) = e.open()
    t = nid()
    assert e.transfers_([xfer(empty, f, 99, id=t, flags=BDR)]) == [S.CREATED]
    assert e.transfers[t].amount == 0


def test_chain_rollback_and_burn_tc27_tc28_tc29() -> None:
    e = Engine()
    (a1,) = e.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    a2, f = e.open(2)
    e.transfers_([xfer(f, a1, 20)])
    t1, t2 = nid(), nid()
    events = [xfer(a1, a2, 15, id=t1, flags=F.LINKED), xfer(a1, a2, 5, id=t2, ledger=0), xfer(a1, a2, 15)]
    assert e.transfers_(events) == [S.LINKED_EVENT_FAILED, S.LEDGER_MUST_NOT_BE_ZERO, S.CREATED]
    assert e.bal(a1) == (0, 15, 0, 20) and t1 not in e.transfers and t2 not in e.transfers
    # Retrying a committed chain.
    c1, c2 = nid(), nid()
    chain = [xfer(f, a2, 5, id=c1, flags=F.LINKED), xfer(f, a2, 6, id=c2)]
    assert e.transfers_(chain) == [S.CREATED, S.CREATED]
    assert e.transfers_(chain) == [S.EXISTS, S.LINKED_EVENT_FAILED]
    assert e.transfers[c1].flags == F.LINKED
    # A transient failure in a chain burns only its own id.
    x1, x2 = e.open(2)
    (x3,) = e.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    r1, r2, r3 = nid(), nid(), nid()
    chain = [
        xfer(x1, x2, 41, id=r1, flags=F.LINKED),
        xfer(x2, x3, 1, id=r2, flags=F.LINKED | F.PENDING | F.BALANCING_DEBIT),
        resolve(r2, F.VOID_PENDING_TRANSFER, id=r3),
    ]
    assert e.transfers_(chain) == [S.LINKED_EVENT_FAILED, S.EXCEEDS_DEBITS, S.LINKED_EVENT_FAILED]
    assert e.bal(x1) == (0, 0, 0, 0)
    assert e.transfers_([xfer(x1, x2, 1, id=r1), xfer(x2, x1, 1, id=r2), xfer(x1, x2, 1, id=r3)]) == [
        S.CREATED,
        S.ID_ALREADY_FAILED,
        S.CREATED,
    ]


def test_closing_accounts_tc30_tc32_tc33() -> None:
    e = Engine()
    a1, a2 = e.open(2)
    p, dup = nid(), nid()
    events = [
        xfer(a1, a2, 15),
        xfer(a1, a2, 0, flags=F.CLOSING_DEBIT),
        xfer(a1, a2, 0, id=p, flags=F.PENDING | F.CLOSING_DEBIT),
        xfer(a1, a2, 0, id=p, flags=F.PENDING | F.CLOSING_DEBIT),
        xfer(a1, a2, 5, id=dup),
        xfer(a1, a2, 5, id=dup),
        xfer(a2, a1, 5),
    ]
    assert e.transfers_(events) == [
        S.CREATED,
        S.CLOSING_TRANSFER_MUST_BE_PENDING,
        S.CREATED,
        S.EXISTS,
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
        S.ID_ALREADY_FAILED,
        S.CREDIT_ACCOUNT_ALREADY_CLOSED,
    ]
    assert e.accounts[a1].flags == AF.CLOSED
    assert e.accounts_(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a1, ledger=1, code=1, flags=AF.CLOSED)]
    ) == [
        AS.EXISTS_WITH_DIFFERENT_FLAGS,
        AS.EXISTS,
    ]
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    assert e.transfers_([resolve(p, POST), resolve(p, VOID), xfer(a1, a2, 5)]) == [
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
        S.CREATED,
        S.CREATED,
    ]
    assert e.accounts[a1].flags == 0
    # Created closed.
    (closed,) = e.open(flags=AF.CLOSED)
    assert e.transfers_([xfer(a1, closed, 1)]) == [S.CREDIT_ACCOUNT_ALREADY_CLOSED]
    # The close-account recipe.
    (a,) = e.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (b,) = e.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    c, f = e.open(2)
    e.transfers_([xfer(f, a, 20), xfer(a, f, 10), xfer(b, f, 30), xfer(f, b, 5)])
    recipe = [
        xfer(a, c, MAX, flags=F.BALANCING_DEBIT | F.LINKED),
        xfer(a, c, 0, flags=F.CLOSING_DEBIT | F.PENDING),
        xfer(c, b, MAX, flags=F.BALANCING_CREDIT | F.LINKED),
        xfer(c, b, 0, flags=F.CLOSING_CREDIT | F.PENDING),
    ]
    assert e.transfers_(recipe) == [S.CREATED] * 4
    assert e.bal(a) == (0, 20, 0, 20) and e.bal(b) == (0, 30, 0, 30) and e.bal(c) == (0, 25, 0, 10)
    assert e.accounts[a].flags & AF.CLOSED and e.accounts[b].flags & AF.CLOSED


def test_imported_events_tc34() -> None:
    e = Engine()
    (r,) = e.open()
    r_ts = e.accounts[r].timestamp
    i1, i2 = nid(), nid()
    imp: dict[str, Any] = {"ledger": 1, "code": 1, "flags": AF.IMPORTED}
    ctx = ImportContext(max_account_timestamp=r_ts)
    assert e.accounts_(
        [tb.Account(id=i1, timestamp=r_ts + 1, **imp), tb.Account(id=i2, ledger=1, code=1)], ctx
    ) == [
        AS.CREATED,
        AS.IMPORTED_EVENT_EXPECTED,
    ]
    now = e.last_ts + 1
    statuses = [
        e.accounts_([tb.Account(id=i2, timestamp=ts, **imp)], ImportContext(max_account_timestamp=r_ts + 1))[
            0
        ]
        for ts in (0, 1 << 63, now + 3600 * 10**9, r_ts + 1, r_ts)
    ]
    assert statuses == [
        AS.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
        AS.IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE,
        AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE,
        AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        AS.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
    ]
    ctx = ImportContext(max_account_timestamp=r_ts + 1)
    assert e.accounts_([tb.Account(id=i2, timestamp=r_ts + 2, **imp)], ctx) == [AS.CREATED]
    assert e.accounts[i2].timestamp == r_ts + 2
    e.last_ts += 1000  # the clock moves on: r_ts + 50 is in the past
    assert e.accounts_([tb.Account(id=i1, timestamp=r_ts + 50, **imp)], ctx) == [AS.EXISTS]
    # Transfers.
    (late,) = e.open()
    late_ts = e.accounts[late].timestamp
    IMP = F.IMPORTED
    tctx = ImportContext(max_transfer_timestamp=0, account_timestamps={r_ts + 2})
    results = e.transfers_(
        [
            xfer(i1, i2, 1, flags=IMP, timestamp=r_ts + 2),
            xfer(late, i2, 1, flags=IMP, timestamp=late_ts - 1),
            xfer(i2, late, 1, flags=IMP, timestamp=late_ts - 1),
            xfer(i1, i2, 1, flags=IMP | F.PENDING, timeout=1, timestamp=late_ts + 1),
            xfer(i1, i2, 1, flags=IMP, timestamp=late_ts + 1),
            xfer(i1, i2, 1, flags=IMP, timestamp=late_ts + 1),
        ],
        tctx,
    )
    assert results == [
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_DEBIT_ACCOUNT,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_POSTDATE_CREDIT_ACCOUNT,
        S.IMPORTED_EVENT_TIMEOUT_MUST_BE_ZERO,
        S.CREATED,
        S.IMPORTED_EVENT_TIMESTAMP_MUST_NOT_REGRESS,
    ]
    assert e.transfers_([xfer(i1, i2, 1), xfer(i1, i2, 1, flags=IMP, timestamp=late_ts + 5)]) == [
        S.CREATED,
        S.IMPORTED_EVENT_NOT_EXPECTED,
    ]


def test_overflows_tc35() -> None:
    e = Engine()
    a, b = e.open(2)
    half = 1 << 127

    def setb(acct: int, dp: int = 0, dpo: int = 0, cp: int = 0, cpo: int = 0) -> None:
        row = e.accounts[acct]
        row.dp, row.dpo, row.cp, row.cpo = dp, dpo, cp, cpo

    setb(a, dpo=MAX)
    assert e.transfers_([xfer(a, b, 1), xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_DEBITS_POSTED] * 2
    setb(a)
    setb(b, cpo=MAX)
    assert e.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_CREDITS_POSTED]
    setb(b)
    setb(a, dp=MAX)
    assert e.transfers_([xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_DEBITS_PENDING]
    setb(a)
    setb(b, cp=MAX)
    assert e.transfers_([xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_CREDITS_PENDING]
    setb(b)
    setb(a, dp=half, dpo=half - 1)
    assert e.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_DEBITS]
    setb(a)
    setb(b, cp=half, cpo=half - 1)
    assert e.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_CREDITS]


def test_same_batch_visibility_tc41() -> None:
    e = Engine()
    a, b = e.open(2)
    p, t3 = nid(), nid()
    events = [
        xfer(a, b, 5, id=p, flags=F.PENDING),
        resolve(p, F.POST_PENDING_TRANSFER, MAX),
        xfer(a, b, 1, id=t3),
        xfer(a, b, 1, id=t3),
    ]
    assert e.transfers_(events) == [S.CREATED, S.CREATED, S.CREATED, S.EXISTS]
    assert e.bal(a) == (0, 6, 0, 0)


# Through PostgreSQL.


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
    fields.setdefault("id", tb.id())
    return xfer(dr, cr, amount, **fields)


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


async def test_round_trip_persists_across_instances(ledger: EmbeddedLedger, database_url: str) -> None:
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


async def test_expiry_through_postgres(ledger: EmbeddedLedger) -> None:
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
    rng: random.Random, accounts: list[int], n_batches: int, size: int
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


async def test_engine_in_memory_and_through_postgres_agree(ledger: EmbeddedLedger) -> None:
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
    mem = Engine()
    assert mem.accounts_(accounts) == [AS.CREATED] * len(accounts)
    assert [r.status for r in await ledger.create_accounts(accounts)] == [AS.CREATED] * len(accounts)
    ids = [a.id for a in accounts]
    funding = [_xfer(ids[4], ids[i], 40) for i in (0, 1, 3)] + [_xfer(ids[2], ids[5], 40)]
    assert mem.transfers_(funding) == [S.CREATED] * 4
    assert [r.status for r in await ledger.create_transfers(funding)] == [S.CREATED] * 4
    for batch in _random_batches(rng, ids, n_batches=25, size=40):
        expected = mem.transfers_(batch)
        got = [r.status for r in await ledger.create_transfers(batch)]
        assert got == expected
    stored = {a.id: a for a in await ledger.lookup_accounts(ids)}
    for account_id in ids:
        a = stored[account_id]
        assert (a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted) == mem.bal(account_id)
        assert a.flags == mem.accounts[account_id].flags
    rows = list(mem.accounts.values())
    assert sum(r.dp for r in rows) == sum(r.cp for r in rows)
    assert sum(r.dpo for r in rows) == sum(r.cpo for r in rows)


def _embedded(dsn: str) -> str:
    return "embedded+" + dsn
