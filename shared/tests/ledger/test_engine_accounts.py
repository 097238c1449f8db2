"""The embedded ledger engine creating accounts: dense results with consecutive timestamps, validation
in TigerBeetle's order, and the idempotency comparison order (the pure engine, no database)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import tigerbeetle as tb

from pm_shared.ledger.embedded.accounts import create_accounts
from pm_shared.ledger.embedded.batch import CREATED

if TYPE_CHECKING:
    from shared.tests.ledger.conftest import Engine, NewId

AS = tb.CreateAccountStatus
AF = tb.AccountFlags
MAX = tb.AMOUNT_MAX


def test_dense_results_and_consecutive_timestamps(engine: Engine, nid: NewId) -> None:
    a1, a2 = nid(), nid()
    results, _ = create_accounts(
        [tb.Account(id=a1, ledger=1, code=1), tb.Account(id=a2, ledger=1, code=1), tb.Account(id=0)],
        engine.accounts,
        500,
    )
    assert results == [(500, CREATED), (501, CREATED), (502, AS.ID_MUST_NOT_BE_ZERO)]
    again, _ = create_accounts([tb.Account(id=a1, ledger=1, code=1)], engine.accounts, 900)
    assert again == [(500, AS.EXISTS)]  # exists carries the original timestamp


def test_account_validation_precedence_tc02(engine: Engine, nid: NewId) -> None:
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
    assert engine.accounts_(events) == [
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
    assert engine.accounts == {}


def test_account_idempotency_order_tc03(engine: Engine) -> None:
    (a,) = engine.open(user_data_128=7, user_data_64=8, user_data_32=9)
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
    assert engine.accounts_([tb.Account(**{**base, **v}) for v in variants]) == [
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
