"""Two-phase transfers on the embedded ledger engine: posting and voiding a pending transfer, the order of
their checks, a post's idempotency and inherited fields, and expiry (the pure engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tigerbeetle as tb

from pm_shared.ledger.embedded.engine import expire
from pm_shared.ledger.embedded.model import P_PENDING, Changes

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer, NewId

S = tb.CreateTransferStatus
F = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX


def test_post_void_amounts_tc14_to_tc18(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a, b = engine.open(2)
    p = nid()
    assert engine.transfers_([xfer(a, b, 100, id=p, code=7, flags=F.PENDING)]) == [S.CREATED]
    q = nid()
    assert engine.transfers_([resolve(p, F.POST_PENDING_TRANSFER, MAX, id=q)]) == [S.CREATED]
    stored = engine.transfers[q]
    assert (stored.dr, stored.cr, stored.ledger, stored.code, stored.amount) == (a, b, 1, 7, 100)
    assert engine.transfers[p].amount == 100 and engine.bal(a) == (0, 100, 0, 0)

    p2 = nid()
    engine.transfers_([xfer(a, b, 100, id=p2, flags=F.PENDING)])
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    assert engine.transfers_([resolve(p2, POST, 60), resolve(p2, POST, 10), resolve(p2, VOID)]) == [
        S.CREATED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]
    assert engine.bal(a) == (0, 160, 0, 0)

    p3 = nid()
    engine.transfers_([xfer(a, b, 100, id=p3, flags=F.PENDING)])
    assert engine.transfers_([resolve(p3, POST, 0)]) == [S.CREATED]  # post 0 posts zero
    assert engine.bal(a) == (0, 160, 0, 0)

    p4 = nid()
    engine.transfers_([xfer(a, b, 100, id=p4, flags=F.PENDING)])
    v = nid()
    statuses = engine.transfers_(
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
    assert engine.transfers[v].amount == 100 and engine.bal(a) == (0, 160, 0, 0)


def test_post_void_precedence_tc19(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a, b, c = engine.open(3)
    p, n = nid(), nid()
    engine.transfers_([xfer(a, b, 10, id=p, code=7, flags=F.PENDING), xfer(a, b, 1, id=n)])
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
    assert engine.transfers_(events) == [
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
    engine.transfers_([resolve(p, POST)])
    assert engine.transfers_([resolve(p, POST, code=99), resolve(p, VOID, 11), resolve(p, VOID)]) == [
        S.PENDING_TRANSFER_HAS_DIFFERENT_CODE,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
        S.PENDING_TRANSFER_ALREADY_POSTED,
    ]


def test_post_idempotency_and_inheritance_tc20_tc21(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a, b = engine.open(2)
    POST = F.POST_PENDING_TRANSFER
    p1, p2, p3 = nid(), nid(), nid()
    engine.transfers_(
        [
            xfer(a, b, 15, id=p1, flags=F.PENDING, user_data_128=11, user_data_64=12, user_data_32=13),
            xfer(a, b, 7, id=p2, flags=F.PENDING),
            xfer(a, b, 1, id=p3, flags=F.PENDING),
        ]
    )
    q1, q2, q3 = nid(), nid(), nid()
    assert engine.transfers_([resolve(p1, POST, 13, id=q1)]) == [S.CREATED]
    assert (engine.transfers[q1].ud128, engine.transfers[q1].ud64, engine.transfers[q1].ud32) == (11, 12, 13)
    assert engine.transfers_([resolve(p1, POST, x, id=q1) for x in (14, MAX, 0, 13)]) == [
        *[S.EXISTS_WITH_DIFFERENT_AMOUNT] * 3,
        S.EXISTS,
    ]
    assert engine.transfers_([resolve(p1, POST, 13, id=q1, user_data_128=99)]) == [
        S.EXISTS_WITH_DIFFERENT_USER_DATA_128
    ]
    assert engine.transfers_([resolve(p1, POST, 13, id=q1, user_data_128=11)]) == [S.EXISTS]
    engine.transfers_([resolve(p2, POST, MAX, id=q2), resolve(p3, POST, 0, id=q3)])
    assert engine.transfers_([resolve(p2, POST, x, id=q2) for x in (7, MAX, 8, 0)]) == [
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert engine.transfers_([resolve(p3, POST, x, id=q3) for x in (0, 1)]) == [
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert [engine.transfers[q].amount for q in (q1, q2, q3)] == [13, 7, 0]
    assert engine.bal(a) == (0, 20, 0, 0)


def test_expiry_releases_and_reopens_tc22_tc31(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a, b, d = engine.open(3)
    p1, p2, pc = nid(), nid(), nid()
    engine.transfers_(
        [
            xfer(a, b, 10, id=p1, flags=F.PENDING, timeout=1),
            xfer(a, b, 20, id=p2, flags=F.PENDING),
            xfer(b, d, 0, id=pc, flags=F.PENDING | F.CLOSING_CREDIT, timeout=1),
        ]
    )
    assert engine.bal(a) == (30, 0, 0, 0) and engine.accounts[d].flags & AF.CLOSED
    # Strict at resolution time even before any pulse.
    engine.last_ts += 2 * 10**9
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    failed = nid()
    assert engine.transfers_(
        [resolve(p1, POST, MAX, id=failed), resolve(p1, VOID), resolve(p1, POST, 11)]
    ) == [
        S.PENDING_TRANSFER_EXPIRED,
        S.PENDING_TRANSFER_EXPIRED,
        S.EXCEEDS_PENDING_TRANSFER_AMOUNT,
    ]
    due = [
        t for t in engine.transfers.values() if t.status == P_PENDING and 0 < t.expires_at <= engine.last_ts
    ]
    changes = Changes()
    expire(sorted(due, key=lambda t: (t.expires_at, t.timestamp)), engine.accounts, changes)
    assert engine.bal(a) == (20, 0, 0, 0)
    assert not engine.accounts[d].flags & AF.CLOSED
    assert engine.transfers_([resolve(p1, VOID)]) == [S.PENDING_TRANSFER_EXPIRED]
    assert engine.transfers_([xfer(a, b, 1, id=failed)]) == [S.CREATED]  # expired is not transient
