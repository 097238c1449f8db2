"""Closing accounts and imported events on the embedded ledger engine: closing and reopening with
pending transfers, the close-account recipe, and the timestamp rules of imported accounts and
transfers (the pure engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tigerbeetle as tb

from pm_shared.ledger.embedded.batch import ImportContext

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer, NewId

S = tb.CreateTransferStatus
AS = tb.CreateAccountStatus
F = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX


def test_closing_accounts_tc30_tc32_tc33(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a1, a2 = engine.open(2)
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
    assert engine.transfers_(events) == [
        S.CREATED,
        S.CLOSING_TRANSFER_MUST_BE_PENDING,
        S.CREATED,
        S.EXISTS,
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
        S.ID_ALREADY_FAILED,
        S.CREDIT_ACCOUNT_ALREADY_CLOSED,
    ]
    assert engine.accounts[a1].flags == AF.CLOSED
    assert engine.accounts_(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a1, ledger=1, code=1, flags=AF.CLOSED)]
    ) == [
        AS.EXISTS_WITH_DIFFERENT_FLAGS,
        AS.EXISTS,
    ]
    POST, VOID = F.POST_PENDING_TRANSFER, F.VOID_PENDING_TRANSFER
    assert engine.transfers_([resolve(p, POST), resolve(p, VOID), xfer(a1, a2, 5)]) == [
        S.DEBIT_ACCOUNT_ALREADY_CLOSED,
        S.CREATED,
        S.CREATED,
    ]
    assert engine.accounts[a1].flags == 0
    # Created closed.
    (closed,) = engine.open(flags=AF.CLOSED)
    assert engine.transfers_([xfer(a1, closed, 1)]) == [S.CREDIT_ACCOUNT_ALREADY_CLOSED]
    # The close-account recipe.
    (a,) = engine.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (b,) = engine.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    c, f = engine.open(2)
    engine.transfers_([xfer(f, a, 20), xfer(a, f, 10), xfer(b, f, 30), xfer(f, b, 5)])
    recipe = [
        xfer(a, c, MAX, flags=F.BALANCING_DEBIT | F.LINKED),
        xfer(a, c, 0, flags=F.CLOSING_DEBIT | F.PENDING),
        xfer(c, b, MAX, flags=F.BALANCING_CREDIT | F.LINKED),
        xfer(c, b, 0, flags=F.CLOSING_CREDIT | F.PENDING),
    ]
    assert engine.transfers_(recipe) == [S.CREATED] * 4
    assert (
        engine.bal(a) == (0, 20, 0, 20)
        and engine.bal(b) == (0, 30, 0, 30)
        and engine.bal(c) == (0, 25, 0, 10)
    )
    assert engine.accounts[a].flags & AF.CLOSED and engine.accounts[b].flags & AF.CLOSED


def test_imported_events_tc34(engine: Engine, nid: NewId, xfer: MakeTransfer) -> None:
    (r,) = engine.open()
    r_ts = engine.accounts[r].timestamp
    i1, i2 = nid(), nid()
    imp: dict[str, Any] = {"ledger": 1, "code": 1, "flags": AF.IMPORTED}
    ctx = ImportContext(max_account_timestamp=r_ts)
    assert engine.accounts_(
        [tb.Account(id=i1, timestamp=r_ts + 1, **imp), tb.Account(id=i2, ledger=1, code=1)], ctx
    ) == [
        AS.CREATED,
        AS.IMPORTED_EVENT_EXPECTED,
    ]
    now = engine.last_ts + 1
    statuses = [
        engine.accounts_(
            [tb.Account(id=i2, timestamp=ts, **imp)], ImportContext(max_account_timestamp=r_ts + 1)
        )[0]
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
    assert engine.accounts_([tb.Account(id=i2, timestamp=r_ts + 2, **imp)], ctx) == [AS.CREATED]
    assert engine.accounts[i2].timestamp == r_ts + 2
    engine.last_ts += 1000  # the clock moves on: r_ts + 50 is in the past
    assert engine.accounts_([tb.Account(id=i1, timestamp=r_ts + 50, **imp)], ctx) == [AS.EXISTS]
    # Transfers.
    (late,) = engine.open()
    late_ts = engine.accounts[late].timestamp
    IMP = F.IMPORTED
    tctx = ImportContext(max_transfer_timestamp=0, account_timestamps={r_ts + 2})
    results = engine.transfers_(
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
    assert engine.transfers_([xfer(i1, i2, 1), xfer(i1, i2, 1, flags=IMP, timestamp=late_ts + 5)]) == [
        S.CREATED,
        S.IMPORTED_EVENT_NOT_EXPECTED,
    ]
