"""What a transfer may move on the embedded ledger engine: the balance limit flags (pending debits count
against them), balancing transfers clamped to them, and overflows of the balances (the pure engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import tigerbeetle as tb

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer, NewId

S = tb.CreateTransferStatus
F = tb.TransferFlags
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX


def test_limits_and_pessimistic_pending_tc09_tc11(engine: Engine, nid: NewId, xfer: MakeTransfer) -> None:
    (a,) = engine.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    b, f = engine.open(2)
    t1 = nid()
    assert engine.transfers_([xfer(a, b, 1, id=t1)]) == [S.EXCEEDS_CREDITS]
    assert engine.transfers_([xfer(f, a, 100)]) == [S.CREATED]
    assert engine.transfers_([xfer(a, b, 1, id=t1)]) == [S.ID_ALREADY_FAILED]
    events = [xfer(a, b, 70), xfer(a, b, 50, flags=F.PENDING), xfer(a, b, 30, flags=F.PENDING), xfer(a, b, 1)]
    assert engine.transfers_(events) == [S.CREATED, S.EXCEEDS_CREDITS, S.CREATED, S.EXCEEDS_CREDITS]
    assert engine.bal(a) == (30, 70, 0, 100)
    # Incoming pending credits are not spendable.
    (c,) = engine.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    assert engine.transfers_([xfer(f, c, 1)]) == [S.EXCEEDS_DEBITS]


def test_balancing_tc23_to_tc26(engine: Engine, nid: NewId, xfer: MakeTransfer) -> None:
    (a1,) = engine.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (a2,) = engine.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    a3, f = engine.open(2)
    engine.transfers_(
        [xfer(f, a1, 10), xfer(a1, f, 1, flags=F.PENDING), xfer(a2, f, 10), xfer(f, a2, 2, flags=F.PENDING)]
    )
    assert engine.bal(a1) == (1, 0, 0, 10) and engine.bal(a2) == (0, 10, 2, 0)
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
    assert engine.transfers_(events) == [S.CREATED] * 8
    assert [engine.transfers[t].amount for t in ts] == [3, 6, 3, 5, 0, 0, 0, 0]
    retries = [xfer(a1, a3, x, id=ts[0], flags=BDR) for x in (2, 0, 3, 4)]
    retries += [xfer(a1, a3, 6, id=ts[1], flags=BDR), xfer(a1, a3, 0, id=ts[1], flags=BDR)]
    assert engine.transfers_(retries) == [
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS,
        S.EXISTS_WITH_DIFFERENT_AMOUNT,
    ]
    assert engine.bal(a1) == (1, 9, 0, 10) and engine.bal(a2) == (0, 10, 2, 8)
    # One-sided balancing still hits the other side's limit.
    (d,) = engine.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    (c,) = engine.open()
    engine.transfers_([xfer(f, d, 4), xfer(c, f, 5)])
    assert engine.transfers_([xfer(d, c, 10, flags=BCR), xfer(d, c, 10, flags=BDR)]) == [
        S.EXCEEDS_CREDITS,
        S.CREATED,
    ]
    # Balancing without limit flags clamps to the net balance.
    (empty,) = engine.open()
    t = nid()
    assert engine.transfers_([xfer(empty, f, 99, id=t, flags=BDR)]) == [S.CREATED]
    assert engine.transfers[t].amount == 0


def test_overflows_tc35(engine: Engine, xfer: MakeTransfer) -> None:
    a, b = engine.open(2)
    half = 1 << 127

    def setb(acct: int, dp: int = 0, dpo: int = 0, cp: int = 0, cpo: int = 0) -> None:
        row = engine.accounts[acct]
        row.dp, row.dpo, row.cp, row.cpo = dp, dpo, cp, cpo

    setb(a, dpo=MAX)
    assert (
        engine.transfers_([xfer(a, b, 1), xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_DEBITS_POSTED] * 2
    )
    setb(a)
    setb(b, cpo=MAX)
    assert engine.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_CREDITS_POSTED]
    setb(b)
    setb(a, dp=MAX)
    assert engine.transfers_([xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_DEBITS_PENDING]
    setb(a)
    setb(b, cp=MAX)
    assert engine.transfers_([xfer(a, b, 1, flags=F.PENDING)]) == [S.OVERFLOWS_CREDITS_PENDING]
    setb(b)
    setb(a, dp=half, dpo=half - 1)
    assert engine.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_DEBITS]
    setb(a)
    setb(b, cp=half, cpo=half - 1)
    assert engine.transfers_([xfer(a, b, 1)]) == [S.OVERFLOWS_CREDITS]
