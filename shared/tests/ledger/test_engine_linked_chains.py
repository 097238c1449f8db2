"""Linked chains on the embedded ledger engine: a failing event fails its chain, which is rolled back (its
timestamps too); an open chain fails; a transient failure burns only its own id (the pure engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tigerbeetle as tb

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer, NewId

S = tb.CreateTransferStatus
AS = tb.CreateAccountStatus
F = tb.TransferFlags
AF = tb.AccountFlags


def test_linked_account_chains_tc04_tc05(engine: Engine, nid: NewId) -> None:
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
    assert engine.accounts_(events) == [
        AS.CREATED,
        *(LEF, LEF, AS.EXISTS, LEF),
        AS.CREATED,
        *(AS.EXISTS_WITH_DIFFERENT_FLAGS, LEF),
        AS.CREATED,
        *(LEF, AS.EXISTS_WITH_DIFFERENT_LEDGER),
        *(AS.CREATED, AS.CREATED),
    ]
    assert set(engine.accounts) == {a1, a2, a3, a4, a7}
    assert engine.accounts[a3].flags == AF.LINKED  # the linked bit is stored

    b = [nid() for _ in range(6)]
    open_chain = [acc(b[0], flags=L), acc(b[1], flags=L), acc(b[2]), acc(b[3], flags=L), acc(b[4], flags=L)]
    assert engine.accounts_(open_chain) == [AS.CREATED] * 3 + [LEF, AS.LINKED_EVENT_CHAIN_OPEN]
    assert engine.accounts_([acc(b[5], flags=L)]) == [AS.LINKED_EVENT_CHAIN_OPEN]
    assert not {b[3], b[4], b[5]} & set(engine.accounts)


def test_rolled_back_pair_timestamps_differ_by_one_tc45(engine: Engine, xfer: MakeTransfer) -> None:
    x, y = engine.open(2)
    results, _ = engine.transfers_full(
        [xfer(x, y, 1, ledger=0, flags=F.LINKED), xfer(x, y, 1, flags=F.LINKED)]
    )
    assert [s for _, s in results] == [S.LEDGER_MUST_NOT_BE_ZERO, S.LINKED_EVENT_CHAIN_OPEN]
    assert results[1][0] - results[0][0] == 1


def test_chain_rollback_and_burn_tc27_tc28_tc29(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    (a1,) = engine.open(flags=AF.DEBITS_MUST_NOT_EXCEED_CREDITS)
    a2, f = engine.open(2)
    engine.transfers_([xfer(f, a1, 20)])
    t1, t2 = nid(), nid()
    events = [xfer(a1, a2, 15, id=t1, flags=F.LINKED), xfer(a1, a2, 5, id=t2, ledger=0), xfer(a1, a2, 15)]
    assert engine.transfers_(events) == [S.LINKED_EVENT_FAILED, S.LEDGER_MUST_NOT_BE_ZERO, S.CREATED]
    assert engine.bal(a1) == (0, 15, 0, 20) and t1 not in engine.transfers and t2 not in engine.transfers
    # Retrying a committed chain.
    c1, c2 = nid(), nid()
    chain = [xfer(f, a2, 5, id=c1, flags=F.LINKED), xfer(f, a2, 6, id=c2)]
    assert engine.transfers_(chain) == [S.CREATED, S.CREATED]
    assert engine.transfers_(chain) == [S.EXISTS, S.LINKED_EVENT_FAILED]
    assert engine.transfers[c1].flags == F.LINKED
    # A transient failure in a chain burns only its own id.
    x1, x2 = engine.open(2)
    (x3,) = engine.open(flags=AF.CREDITS_MUST_NOT_EXCEED_DEBITS)
    r1, r2, r3 = nid(), nid(), nid()
    chain = [
        xfer(x1, x2, 41, id=r1, flags=F.LINKED),
        xfer(x2, x3, 1, id=r2, flags=F.LINKED | F.PENDING | F.BALANCING_DEBIT),
        resolve(r2, F.VOID_PENDING_TRANSFER, id=r3),
    ]
    assert engine.transfers_(chain) == [S.LINKED_EVENT_FAILED, S.EXCEEDS_DEBITS, S.LINKED_EVENT_FAILED]
    assert engine.bal(x1) == (0, 0, 0, 0)
    assert engine.transfers_([xfer(x1, x2, 1, id=r1), xfer(x2, x1, 1, id=r2), xfer(x1, x2, 1, id=r3)]) == [
        S.CREATED,
        S.ID_ALREADY_FAILED,
        S.CREATED,
    ]
