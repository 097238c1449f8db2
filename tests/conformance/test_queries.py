"""Query operations: lookups, `get_account_transfers`, `get_account_balances`, `query_accounts` and
`query_transfers`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import tigerbeetle as tb

from pm_shared.ledger.api import LedgerSync

S = tb.CreateTransferStatus
TF = tb.TransferFlags
AF = tb.AccountFlags
FF = tb.AccountFilterFlags
QF = tb.QueryFilterFlags
MAX = tb.AMOUNT_MAX
DR, CR, REV = FF.DEBITS, FF.CREDITS, FF.REVERSED


def account_filter(account_id: int, **fields: Any) -> tb.AccountFilter:
    values: dict[str, Any] = {
        "account_id": account_id,
        "user_data_128": 0,
        "user_data_64": 0,
        "user_data_32": 0,
        "code": 0,
        "timestamp_min": 0,
        "timestamp_max": 0,
        "limit": 8189,
        "flags": DR | CR,
    }
    values.update(fields)
    return tb.AccountFilter(**values)


def query_filter(**fields: Any) -> tb.QueryFilter:
    values: dict[str, Any] = {
        "user_data_128": 0,
        "user_data_64": 0,
        "user_data_32": 0,
        "ledger": 0,
        "code": 0,
        "timestamp_min": 0,
        "timestamp_max": 0,
        "limit": 8189,
        "flags": QF.NONE,
    }
    values.update(fields)
    return tb.QueryFilter(**values)


def rows(balances: list[tb.AccountBalance]) -> list[tuple[int, int, int, int]]:
    return [(b.debits_pending, b.debits_posted, b.credits_pending, b.credits_posted) for b in balances]


# --- lookups ---------------------------------------------------------------------------------


def test_lookup_accounts_order_duplicates_missing(
    ledger: LedgerSync, new_id: Callable[[], int], make_accounts: Callable[..., list[int]]
) -> None:
    """Request order, duplicates repeated, missing/0/MAX omitted, [] for []."""
    a, b = make_accounts(2)
    assert [x.id for x in ledger.lookup_accounts([a, new_id(), a, 0, MAX])] == [a, a]
    assert [x.id for x in ledger.lookup_accounts([b, a, b])] == [b, a, b]
    assert ledger.lookup_accounts([]) == []
    assert ledger.lookup_transfers([]) == []


def test_lookup_transfers_order_and_failed(
    ledger: LedgerSync,
    new_id: Callable[[], int],
    make_accounts: Callable[..., list[int]],
    xfer: Callable[..., tb.Transfer],
    move: Callable[..., int],
) -> None:
    """Failed transfers are not found; found ones come back in request order."""
    a, b = make_accounts(2)
    t1, t2 = move(a, b, 1), move(a, b, 2)
    failed = xfer(a, b, 1, ledger=0)
    assert [r.status for r in ledger.create_transfers([failed])] == [S.LEDGER_MUST_NOT_BE_ZERO]
    found = ledger.lookup_transfers([t2, failed.id, t1, new_id(), t2, 0, MAX])
    assert [t.id for t in found] == [t2, t1, t2]
    assert [t.amount for t in found] == [2, 1, 2]


# --- get_account_transfers -------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    a1: int
    a2: int
    transfers: list[int]
    timestamps: list[int]
    user_data_128: int


@pytest.fixture(scope="module")
def scenario(ledger: LedgerSync) -> Scenario:
    """Four transfers alternating between A1 and A2 (both with history), one batch.

    T1 A1→A2 10 (ud128=U, code 1); T2 A2→A1 11 (ud128=U, ud64=6, code 2);
    T3 A1→A2 12 (ud64=6, code 1); T4 A2→A1 13 (ud128=U, ud64=6, ud32=3, code 2).
    """
    a1, a2, u = tb.id(), tb.id(), tb.id()
    accounts = [tb.Account(id=i, ledger=1, code=1, flags=AF.HISTORY) for i in (a1, a2)]
    assert [r.status for r in ledger.create_accounts(accounts)] == [tb.CreateAccountStatus.CREATED] * 2
    specs: list[tuple[int, int, int, dict[str, Any]]] = [
        (a1, a2, 10, {"user_data_128": u, "code": 1}),
        (a2, a1, 11, {"user_data_128": u, "user_data_64": 6, "code": 2}),
        (a1, a2, 12, {"user_data_64": 6, "code": 1}),
        (a2, a1, 13, {"user_data_128": u, "user_data_64": 6, "user_data_32": 3, "code": 2}),
    ]
    transfers = [
        tb.Transfer(id=tb.id(), debit_account_id=dr, credit_account_id=cr, amount=n, ledger=1, **kw)
        for dr, cr, n, kw in specs
    ]
    results = ledger.create_transfers(transfers)
    assert [r.status for r in results] == [S.CREATED] * 4
    return Scenario(a1, a2, [t.id for t in transfers], [r.timestamp for r in results], u)


# Each case: filter fields (strings "tsN" / "U" resolved against the scenario) → expected transfer numbers.
GET_ACCOUNT_TRANSFERS_CASES: list[tuple[str, dict[str, Any], list[int]]] = [
    ("debits_and_credits", {}, [1, 2, 3, 4]),
    ("limit_2", {"limit": 2}, [1, 2]),
    ("reversed", {"flags": DR | CR | REV}, [4, 3, 2, 1]),
    ("reversed_limit_2", {"flags": DR | CR | REV, "limit": 2}, [4, 3]),
    ("debits_only", {"flags": DR}, [1, 3]),
    ("credits_only", {"flags": CR}, [2, 4]),
    ("credits_reversed", {"flags": CR | REV}, [4, 2]),
    ("timestamp_min_inclusive", {"timestamp_min": "ts2"}, [2, 3, 4]),
    ("timestamp_max_inclusive", {"timestamp_max": "ts3"}, [1, 2, 3]),
    ("timestamp_range", {"timestamp_min": "ts2", "timestamp_max": "ts3"}, [2, 3]),
    ("timestamp_point", {"timestamp_min": "ts3", "timestamp_max": "ts3"}, [3]),
    ("user_data_128", {"user_data_128": "U"}, [1, 2, 4]),
    ("user_data_64", {"user_data_64": 6}, [2, 3, 4]),
    ("user_data_32", {"user_data_32": 3}, [4]),
    ("code", {"code": 2}, [2, 4]),
    ("user_data_128_and_code", {"user_data_128": "U", "code": 1}, [1]),
    ("all_filters", {"user_data_128": "U", "user_data_64": 6, "user_data_32": 3, "code": 2}, [4]),
    ("debits_and_user_data_64", {"flags": DR, "user_data_64": 6}, [3]),
    ("no_match", {"user_data_32": 4}, []),
    ("invalid_no_direction", {"flags": REV}, []),
    ("invalid_no_flags", {"flags": FF.NONE}, []),
    ("invalid_unknown_flag", {"flags": DR | CR | (1 << 3)}, []),
    ("invalid_min_above_max", {"timestamp_min": "ts3", "timestamp_max": "ts2"}, []),
    ("invalid_timestamp_out_of_range", {"timestamp_min": 2**63}, []),
    ("invalid_limit_0", {"limit": 0}, []),
    ("invalid_account_0", {"account_id": 0}, []),
    ("invalid_account_max", {"account_id": MAX}, []),
    ("unknown_account", {"account_id": "missing"}, []),
]


def resolve_fields(s: Scenario, fields: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str) and value.startswith("ts"):
            value = s.timestamps[int(value[2:]) - 1]
        elif value == "U":
            value = s.user_data_128
        elif value == "missing":
            value = tb.id()
        resolved[key] = value
    return resolved


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(f, e) for _, f, e in GET_ACCOUNT_TRANSFERS_CASES],
    ids=[name for name, _, _ in GET_ACCOUNT_TRANSFERS_CASES],
)
def test_get_account_transfers(
    ledger: LedgerSync, scenario: Scenario, fields: dict[str, Any], expected: list[int]
) -> None:
    """Selection by side and filters, inclusive bounds, order, limit; invalid filter → []."""
    resolved = {"account_id": scenario.a1, **resolve_fields(scenario, fields)}
    flt = account_filter(**resolved)
    got = [t.id for t in ledger.get_account_transfers(flt)]
    assert got == [scenario.transfers[n - 1] for n in expected]


def test_get_account_transfers_returns_full_objects_and_pages(ledger: LedgerSync, scenario: Scenario) -> None:
    """Paging: `timestamp_min = last.timestamp + 1` continues a page; objects equal lookups."""
    page1 = ledger.get_account_transfers(account_filter(scenario.a2, limit=3))
    assert page1 == ledger.lookup_transfers(scenario.transfers[:3])
    page2 = ledger.get_account_transfers(
        account_filter(scenario.a2, limit=3, timestamp_min=page1[-1].timestamp + 1)
    )
    assert [t.id for t in page2] == scenario.transfers[3:]
    back = ledger.get_account_transfers(
        account_filter(scenario.a2, limit=2, flags=DR | CR | REV, timestamp_max=scenario.timestamps[2] - 1)
    )
    assert [t.id for t in back] == [scenario.transfers[1], scenario.transfers[0]]


# --- get_account_balances --------------------------------------------------------------------


def test_get_account_balances_history(ledger: LedgerSync, scenario: Scenario) -> None:
    """One row per transfer, balances after it, the transfer's timestamp."""
    got = ledger.get_account_balances(account_filter(scenario.a1))
    assert rows(got) == [(0, 10, 0, 0), (0, 10, 0, 11), (0, 22, 0, 11), (0, 22, 0, 24)]
    assert [b.timestamp for b in got] == scenario.timestamps
    credit_side = ledger.get_account_balances(account_filter(scenario.a2, flags=CR, code=1))
    assert rows(credit_side) == [(0, 0, 0, 10), (0, 11, 0, 22)]
    assert [b.timestamp for b in credit_side] == [scenario.timestamps[0], scenario.timestamps[2]]
    newest = ledger.get_account_balances(account_filter(scenario.a1, flags=DR | CR | REV, limit=2))
    assert rows(newest) == [(0, 22, 0, 24), (0, 22, 0, 11)]
    assert [b.timestamp for b in newest] == [scenario.timestamps[3], scenario.timestamps[2]]


def test_get_account_balances_invalid_filter(ledger: LedgerSync, scenario: Scenario) -> None:
    """Validity: the get_account_transfers filter rules apply; invalid → []."""
    assert ledger.get_account_balances(account_filter(scenario.a1, limit=0)) == []
    assert ledger.get_account_balances(account_filter(scenario.a1, flags=REV)) == []
    assert ledger.get_account_balances(account_filter(tb.id())) == []


def test_get_account_balances_requires_history(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], move: Callable[..., int]
) -> None:
    """An account without `flags.history` gives []; the counterparty's flag is irrelevant."""
    (plain,) = make_accounts(1)
    (hist,) = make_accounts(1, flags=AF.HISTORY)
    move(plain, hist, 5)
    assert ledger.get_account_balances(account_filter(plain)) == []
    assert rows(ledger.get_account_balances(account_filter(hist))) == [(0, 0, 0, 5)]
    assert len(ledger.get_account_transfers(account_filter(plain))) == 1


def test_get_account_balances_pending_post_void(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
) -> None:
    """Pending, post and void each add a row."""
    (a,) = make_accounts(1, flags=AF.HISTORY)
    (b,) = make_accounts(1)
    move(a, b, 4)
    p1 = move(a, b, 1, flags=TF.PENDING)
    move(0, 0, MAX, pending_id=p1, flags=TF.POST_PENDING_TRANSFER, ledger=0, code=0)
    p2 = move(a, b, 2, flags=TF.PENDING)
    move(0, 0, 0, pending_id=p2, flags=TF.VOID_PENDING_TRANSFER, ledger=0, code=0)
    got = ledger.get_account_balances(account_filter(a))
    assert rows(got) == [(0, 4, 0, 0), (1, 4, 0, 0), (0, 5, 0, 0), (2, 5, 0, 0), (0, 5, 0, 0)]
    assert [b.timestamp for b in got] == [
        t.timestamp for t in ledger.get_account_transfers(account_filter(a))
    ]


def test_post_and_void_rows_inherit_code(
    ledger: LedgerSync,
    make_accounts: Callable[..., list[int]],
    move: Callable[..., int],
) -> None:
    """Posts and voids carry the pending's dr/cr/ledger/code, so filters find them."""
    lgr = 100_000 + tb.id() % 1_000_000_000
    a, b = make_accounts(2, ledger=lgr)
    p1 = move(a, b, 5, code=7, flags=TF.PENDING, ledger=lgr)
    p2 = move(a, b, 6, code=7, flags=TF.PENDING, ledger=lgr)
    other = move(a, b, 1, code=8, ledger=lgr)
    post = move(0, 0, MAX, pending_id=p1, flags=TF.POST_PENDING_TRANSFER, ledger=0, code=0)
    void = move(0, 0, 0, pending_id=p2, flags=TF.VOID_PENDING_TRANSFER, ledger=0, code=0)
    assert [t.id for t in ledger.get_account_transfers(account_filter(a))] == [p1, p2, other, post, void]
    assert [t.id for t in ledger.get_account_transfers(account_filter(b, code=7))] == [p1, p2, post, void]
    start = ledger.lookup_transfers([p1])[0].timestamp
    found = ledger.query_transfers(query_filter(ledger=lgr, code=7, timestamp_min=start))
    assert [t.id for t in found] == [p1, p2, post, void]
    assert [t.id for t in ledger.query_transfers(query_filter(ledger=lgr, code=8, timestamp_min=start))] == [
        other
    ]


# --- query_accounts / query_transfers --------------------------------------------------------


@dataclass(frozen=True)
class AccountsScenario:
    ids: list[int]
    timestamps: list[int]
    user_data_128: int
    ledger: int


@pytest.fixture(scope="module")
def accounts_scenario(ledger: LedgerSync) -> AccountsScenario:
    """Eight accounts in one batch; 1, 2, 3, 4, 8 share `ud128=U`; 1 and 8 share all five fields."""
    u, u2 = tb.id(), tb.id()
    lg = 100_000 + tb.id() % 1_000_000_000
    full: dict[str, Any] = {
        "user_data_128": u,
        "user_data_64": 64,
        "user_data_32": 32,
        "ledger": lg,
        "code": 9,
    }
    specs: list[dict[str, Any]] = [
        full,
        {**full, "code": 8},
        {**full, "user_data_64": 65},
        {**full, "user_data_32": 33},
        {**full, "user_data_128": u2},
        {**full, "user_data_128": u2, "ledger": lg + 1},
        {"user_data_128": u2, "ledger": lg, "code": 9},
        full,
    ]
    ids = [tb.id() for _ in specs]
    results = ledger.create_accounts([tb.Account(id=i, **kw) for i, kw in zip(ids, specs, strict=True)])
    assert [r.status for r in results] == [tb.CreateAccountStatus.CREATED] * 8
    return AccountsScenario(ids, [r.timestamp for r in results], u, lg)


QUERY_ACCOUNTS_CASES: list[tuple[str, dict[str, Any], list[int]]] = [
    ("user_data_128", {"user_data_128": "U"}, [1, 2, 3, 4, 8]),
    ("user_data_128_reversed", {"user_data_128": "U", "flags": QF.REVERSED}, [8, 4, 3, 2, 1]),
    ("user_data_128_limit_2", {"user_data_128": "U", "limit": 2}, [1, 2]),
    (
        "five_fields",
        {"user_data_128": "U", "user_data_64": 64, "user_data_32": 32, "ledger": "L", "code": 9},
        [1, 8],
    ),
    ("ledger_and_code", {"ledger": "L", "code": 9}, [1, 3, 4, 5, 7, 8]),
    ("ledger_code_ud64", {"ledger": "L", "code": 9, "user_data_64": 65}, [3]),
    ("ledger_reversed_limit", {"ledger": "L", "flags": QF.REVERSED, "limit": 3}, [8, 7, 5]),
    ("timestamp_range", {"timestamp_min": "ts2", "timestamp_max": "ts4"}, [2, 3, 4]),
    ("timestamp_min_limit_3", {"timestamp_min": "ts2", "limit": 3}, [2, 3, 4]),
    (
        "timestamp_range_and_ledger",
        {"timestamp_min": "ts2", "timestamp_max": "ts7", "ledger": "L", "code": 9},
        [3, 4, 5, 7],
    ),
    ("no_match", {"user_data_128": "U", "code": 7}, []),
    ("invalid_limit_0", {"user_data_128": "U", "limit": 0}, []),
    ("invalid_flags", {"user_data_128": "U", "flags": 1 << 1}, []),
    ("invalid_min_above_max", {"user_data_128": "U", "timestamp_min": "ts4", "timestamp_max": "ts2"}, []),
]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [(f, e) for _, f, e in QUERY_ACCOUNTS_CASES],
    ids=[name for name, _, _ in QUERY_ACCOUNTS_CASES],
)
def test_query_accounts(
    ledger: LedgerSync, accounts_scenario: AccountsScenario, fields: dict[str, Any], expected: list[int]
) -> None:
    """AND of the non-zero fields, timestamp range, order, limit; invalid → []."""
    s = accounts_scenario
    resolved: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, str) and value.startswith("ts"):
            value = s.timestamps[int(value[2:]) - 1]
        elif value == "U":
            value = s.user_data_128
        elif value == "L":
            value = s.ledger
        resolved[key] = value
    got = [a.id for a in ledger.query_accounts(query_filter(**resolved))]
    assert got == [s.ids[n - 1] for n in expected]


def test_query_accounts_returns_full_objects(ledger: LedgerSync, accounts_scenario: AccountsScenario) -> None:
    """Query results are the stored accounts, equal to what lookup returns."""
    s = accounts_scenario
    found = ledger.query_accounts(query_filter(user_data_128=s.user_data_128))
    assert found == ledger.lookup_accounts([s.ids[i] for i in (0, 1, 2, 3, 7)])


def test_query_transfers(
    ledger: LedgerSync, make_accounts: Callable[..., list[int]], xfer: Callable[..., tb.Transfer]
) -> None:
    """Transfers by `user_data_128` (a zero-amount one included), with code, reversed."""
    a, b = make_accounts(2)
    u = tb.id()
    t1 = xfer(a, b, 5, user_data_128=u, code=3)
    t2 = xfer(b, a, 0, user_data_128=u, code=4)
    t3 = xfer(a, b, 6, code=3)
    assert [r.status for r in ledger.create_transfers([t1, t2, t3])] == [S.CREATED] * 3
    assert [t.id for t in ledger.query_transfers(query_filter(user_data_128=u))] == [t1.id, t2.id]
    assert [t.id for t in ledger.query_transfers(query_filter(user_data_128=u, flags=QF.REVERSED))] == [
        t2.id,
        t1.id,
    ]
    assert [
        t.id for t in ledger.query_transfers(query_filter(user_data_128=u, code=3, flags=QF.REVERSED))
    ] == [t1.id]
    assert ledger.query_transfers(query_filter(user_data_128=u, limit=0)) == []
    assert ledger.query_transfers(query_filter(user_data_128=tb.id())) == []
    ts1 = ledger.lookup_transfers([t1.id])[0].timestamp
    window = ledger.query_transfers(query_filter(timestamp_min=ts1, timestamp_max=ts1 + 2))
    assert [t.id for t in window] == [t1.id, t2.id, t3.id]
