"""The embedded ledger engine creating transfers: validation in TigerBeetle's order and burned ids, the
idempotency comparison order, and events seeing earlier ones of the same batch (the pure engine)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tigerbeetle as tb

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, MakeTransfer, NewId

S = tb.CreateTransferStatus
F = tb.TransferFlags
MAX = tb.AMOUNT_MAX


def test_transfer_validation_precedence_and_burned_ids_tc07(
    engine: Engine, nid: NewId, xfer: MakeTransfer
) -> None:
    a, b = engine.open(2)
    (c,) = engine.open(ledger=2)
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
    assert engine.transfers_(events) == [
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
    assert engine.transfers_([xfer(a, b, 1, id=t1), xfer(a, b, 1, id=t2)]) == [S.ID_ALREADY_FAILED] * 2
    assert engine.burned == {t1, t2}


def test_transfer_idempotency_order_tc12(engine: Engine, nid: NewId, xfer: MakeTransfer) -> None:
    x1, x2, x3 = engine.open(3)
    t = nid()
    orig = {"id": t, "user_data_128": 1, "user_data_64": 2, "user_data_32": 3, "code": 4}
    first, _ = engine.transfers_full([xfer(x1, x2, 10, **orig)])
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
    results, _ = engine.transfers_full([xfer(*args, **{**orig, **v}) for args, v in variants])
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
    assert engine.bal(x1) == (0, 10, 0, 0)


def test_same_batch_visibility_tc41(
    engine: Engine, nid: NewId, xfer: MakeTransfer, resolve: MakeTransfer
) -> None:
    a, b = engine.open(2)
    p, t3 = nid(), nid()
    events = [
        xfer(a, b, 5, id=p, flags=F.PENDING),
        resolve(p, F.POST_PENDING_TRANSFER, MAX),
        xfer(a, b, 1, id=t3),
        xfer(a, b, 1, id=t3),
    ]
    assert engine.transfers_(events) == [S.CREATED, S.CREATED, S.CREATED, S.EXISTS]
    assert engine.bal(a) == (0, 6, 0, 0)
