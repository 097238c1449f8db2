"""Opening ledger accounts from the chart, `pm.tb_account_map`, and the account verifier (docs/ledger.md).

- `spec_account(spec)`: the `tb.Account` a spec stands for (deterministic id, ledger, code, flags).
- `open_accounts(ledger, conn, specs)`: create the accounts (created or already existing — identical —
  are both fine) and record them in `pm.tb_account_map`; idempotent, so a retry changes nothing.
- `open_operator_accounts(ledger, conn)`: the operator's accounts on every ledger (run at start).
- `verify(ledger, conn)`: every mapped account exists on the ledger as the chart says it should.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import asyncpg
import tigerbeetle as tb

from pm_shared.db import Conn
from pm_shared.ledger import chart, ids
from pm_shared.ledger import queries as q
from pm_shared.ledger.api import BATCH_MAX, Ledger

# Statuses that mean "the account is on the ledger exactly as asked": `exists` is only returned when
# every field matches (otherwise an `exists_with_different_*` status is).
_OK_STATUSES = frozenset({tb.CreateAccountStatus.CREATED, tb.CreateAccountStatus.EXISTS})

# The only account flag that changes after creation (closing transfers set and clear it).
_MUTABLE_FLAGS = tb.AccountFlags.CLOSED


class AccountOpenError(RuntimeError):
    """The ledger refused some accounts, or `pm.tb_account_map` disagrees with what was asked."""

    def __init__(self, message: str, failures: Sequence[tuple[chart.AccountSpec, str]] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


@dataclass(frozen=True)
class MappedAccount:
    """A row of `pm.tb_account_map`."""

    owner_kind: str
    owner_id: str
    currency: str
    code: int
    account_id: int
    ledger: int
    flags: int
    created_at: datetime


class ProblemKind(StrEnum):
    MISSING = "missing"
    """Mapped, but the ledger has no account with that id."""
    ID_MISMATCH = "id_mismatch"
    """The mapped id is not `ids.account_id(owner kind, owner id, ledger, code)`."""
    UNKNOWN_CHART = "unknown_chart"
    """The map row names a currency or code the chart does not have."""
    MAP_MISMATCH = "map_mismatch"
    """The map row's ledger or flags differ from the chart's."""
    LEDGER_MISMATCH = "ledger_mismatch"
    """The ledger's account is on another ledger than the chart's."""
    CODE_MISMATCH = "code_mismatch"
    """The ledger's account has another code."""
    FLAGS_MISMATCH = "flags_mismatch"
    """The ledger's account flags, ignoring `closed`, differ from the chart's."""
    CLOSED = "closed"
    """The ledger's account is closed: it accepts no transfers until reopened."""
    UNMAPPED_OPERATOR = "unmapped_operator"
    """An operator account the chart requires is not in the map (`open_operator_accounts` never ran)."""


@dataclass(frozen=True)
class Problem:
    """One thing the verifier found wrong with one mapped account."""

    kind: ProblemKind
    account_id: int
    owner_kind: str
    owner_id: str
    currency: str
    code: int
    detail: str


def spec_account(spec: chart.AccountSpec) -> tb.Account:
    """The account `spec` stands for: id from `ids.account_id`; ledger, code and flags from the chart."""
    ledger = spec.ledger
    return tb.Account(
        id=ids.account_id(spec.owner_kind, spec.owner_id, ledger, int(spec.code)),
        ledger=ledger,
        code=int(spec.code),
        flags=spec.flags,
    )


def _uuid_text(value: int) -> str:
    return str(uuid.UUID(int=value))


def _mapped(record: asyncpg.Record) -> MappedAccount:
    return MappedAccount(
        owner_kind=record["owner_kind"],
        owner_id=record["owner_id"],
        currency=record["currency"],
        code=record["code"],
        account_id=uuid.UUID(record["account_id"]).int,
        ledger=record["ledger"],
        flags=record["flags"],
        created_at=record["created_at"],
    )


def _describe(spec: chart.AccountSpec) -> str:
    return f"{spec.owner_kind}/{spec.owner_id} {spec.currency} {spec.code.name.lower()}"


def _status_name(status: object) -> str:
    name = getattr(status, "name", None)
    return name.lower() if isinstance(name, str) else str(status)


async def open_accounts(
    ledger: Ledger, conn: Conn, specs: Iterable[chart.AccountSpec]
) -> list[MappedAccount]:
    """Create the accounts of `specs` on the ledger and record them in `pm.tb_account_map`.

    Idempotent: accounts the ledger already has (identical) and map rows already stored are left as
    they are. Raises `AccountOpenError` naming every spec the ledger refused, with its status, or
    whose stored map row disagrees; `chart.UnknownCurrencyError` for a currency with no ledger.
    Returns the map rows of `specs`, in their order (duplicates collapsed).
    """
    unique = list(dict.fromkeys(specs))
    if not unique:
        return []
    accounts = [spec_account(spec) for spec in unique]

    failures: list[tuple[chart.AccountSpec, str]] = []
    for start in range(0, len(accounts), BATCH_MAX):
        chunk = accounts[start : start + BATCH_MAX]
        results = await ledger.create_accounts(chunk)
        if len(results) != len(chunk):
            raise AccountOpenError(f"the ledger answered {len(results)} results for {len(chunk)} accounts")
        refused = [
            (unique[start + offset], chunk[offset], result.status)
            for offset, result in enumerate(results)
            if result.status not in _OK_STATUSES
        ]
        failures.extend(await _unless_closed(ledger, refused))
    if failures:
        listed = "; ".join(f"{_describe(spec)}: {status}" for spec, status in failures)
        raise AccountOpenError(f"the ledger refused {len(failures)} account(s): {listed}", failures)

    return await record_opened(conn, unique)


async def record_opened(conn: Conn, specs: Iterable[chart.AccountSpec]) -> list[MappedAccount]:
    """Record accounts the ledger already has in `pm.tb_account_map` (idempotent).

    For callers that had the ledger-writer open them. Raises `AccountOpenError` when a stored row
    disagrees. Returns the map rows of `specs`, in their order (duplicates collapsed).
    """
    unique = list(dict.fromkeys(specs))
    accounts = [spec_account(spec) for spec in unique]
    failures: list[tuple[chart.AccountSpec, str]] = []
    async with conn.transaction():
        await conn.execute(
            q.INSERT_MAP_ROWS,
            [s.owner_kind for s in unique],
            [s.owner_id for s in unique],
            [s.currency for s in unique],
            [int(s.code) for s in unique],
            [_uuid_text(a.id) for a in accounts],
            [a.ledger for a in accounts],
            [int(a.flags) for a in accounts],
        )
        records = await conn.fetch(
            q.SELECT_MAP_ROWS_FOR,
            [s.owner_kind for s in unique],
            [s.owner_id for s in unique],
            [s.currency for s in unique],
            [int(s.code) for s in unique],
            [_uuid_text(a.id) for a in accounts],
        )
    stored = [_mapped(r) for r in records]
    by_key = {(m.owner_kind, m.owner_id, m.currency, m.code): m for m in stored}
    by_id = {m.account_id: m for m in stored}

    rows: list[MappedAccount] = []
    for spec, account in zip(unique, accounts, strict=True):
        row = by_key.get((spec.owner_kind, spec.owner_id, spec.currency, int(spec.code)))
        if row is None:
            other = by_id.get(account.id)
            owner = f"{other.owner_kind}/{other.owner_id} {other.currency} {other.code}" if other else "?"
            failures.append((spec, f"account id {account.id} is already mapped to {owner}"))
            continue
        if row.account_id != account.id or row.ledger != account.ledger or row.flags != int(account.flags):
            failures.append(
                (
                    spec,
                    f"mapped as id {row.account_id} ledger {row.ledger} flags {row.flags}, expected "
                    f"id {account.id} ledger {account.ledger} flags {int(account.flags)}",
                )
            )
            continue
        rows.append(row)
    if failures:
        listed = "; ".join(f"{_describe(spec)}: {why}" for spec, why in failures)
        raise AccountOpenError(
            f"pm.tb_account_map disagrees for {len(failures)} account(s): {listed}", failures
        )
    return rows


async def _unless_closed(
    ledger: Ledger, refused: list[tuple[chart.AccountSpec, tb.Account, tb.CreateAccountStatus]]
) -> list[tuple[chart.AccountSpec, str]]:
    """The refusals that are real: the ledger compares the stored flags *with* the mutable `closed` bit
    (as TigerBeetle does), so an account that exists as asked but was closed since answers
    `exists_with_different_flags`; a lookup tells it apart (the verifier reports it as closed)."""
    different = [
        a.id for _, a, status in refused if status == tb.CreateAccountStatus.EXISTS_WITH_DIFFERENT_FLAGS
    ]
    stored = {a.id: a for a in await ledger.lookup_accounts(different)} if different else {}
    failures: list[tuple[chart.AccountSpec, str]] = []
    for spec, wanted, status in refused:
        found = stored.get(wanted.id)
        if (
            found is not None
            and int(found.flags) == int(wanted.flags) | int(tb.AccountFlags.CLOSED)
            and (found.ledger, found.code, found.user_data_128, found.user_data_64, found.user_data_32)
            == (wanted.ledger, wanted.code, wanted.user_data_128, wanted.user_data_64, wanted.user_data_32)
        ):
            continue
        failures.append((spec, _status_name(status)))
    return failures


async def open_operator_accounts(
    ledger: Ledger, conn: Conn, currencies: Iterable[str] = chart.LEDGERS
) -> list[MappedAccount]:
    """Open the operator's accounts (`chart.OPERATOR_CODES`) on the ledger of every currency."""
    specs = [spec for currency in currencies for spec in chart.operator_accounts(currency)]
    return await open_accounts(ledger, conn, specs)


async def lookup_mapped(
    conn: Conn, owner_kind: str, owner_id: str, currency: str, code: int
) -> MappedAccount | None:
    """The map row of (owner kind, owner id, currency, code), or None if it was never opened."""
    record = await conn.fetchrow(q.SELECT_MAP_ROW, owner_kind, owner_id, currency, int(code))
    return None if record is None else _mapped(record)


async def lookup_mapped_id(conn: Conn, account_id: int) -> MappedAccount | None:
    """The map row of the ledger account `account_id`, or None if PM has no record of it."""
    if not 0 <= account_id <= ids.U128_MAX:
        return None
    record = await conn.fetchrow(q.SELECT_MAP_ROW_BY_ID, _uuid_text(account_id))
    return None if record is None else _mapped(record)


async def mapped_accounts(conn: Conn, *, page_size: int = 1000) -> list[MappedAccount]:
    """Every row of `pm.tb_account_map`, in account id order."""
    rows: list[MappedAccount] = []
    after = _uuid_text(0)
    while True:
        page = [_mapped(r) for r in await conn.fetch(q.SELECT_MAP_PAGE, after, page_size)]
        rows.extend(page)
        if len(page) < page_size:
            return rows
        after = _uuid_text(page[-1].account_id)


def _expected(row: MappedAccount) -> tuple[int, chart.Code, tb.AccountFlags] | str:
    """The chart's ledger, code and flags for `row`, or why the chart has none."""
    try:
        ledger = chart.ledger_of(row.currency)
    except chart.UnknownCurrencyError as exc:
        return str(exc)
    try:
        code = chart.Code(row.code)
    except ValueError:
        return f"code {row.code} is not in the chart of accounts"
    return ledger, code, chart.FLAGS[code]


def _flag_names(flags: int) -> str:
    names = [f.name.lower() for f in tb.AccountFlags if f.value and flags & f.value and f.name]
    return "|".join(names) or "none"


def check_account(row: MappedAccount, account: tb.Account | None) -> list[Problem]:
    """What is wrong with mapped `row`, given the ledger's `account` with its id (None: not found)."""

    def problem(kind: ProblemKind, detail: str) -> Problem:
        return Problem(kind, row.account_id, row.owner_kind, row.owner_id, row.currency, row.code, detail)

    problems: list[Problem] = []
    expected = _expected(row)
    if isinstance(expected, str):
        problems.append(problem(ProblemKind.UNKNOWN_CHART, expected))
    else:
        ledger, code, flags = expected
        want_id = ids.account_id(row.owner_kind, row.owner_id, ledger, int(code))
        if row.account_id != want_id:
            problems.append(
                problem(ProblemKind.ID_MISMATCH, f"mapped id {row.account_id}, expected {want_id}")
            )
        if row.ledger != ledger or row.flags != int(flags):
            problems.append(
                problem(
                    ProblemKind.MAP_MISMATCH,
                    f"map row says ledger {row.ledger} flags {_flag_names(row.flags)}, "
                    f"chart says ledger {ledger} flags {_flag_names(int(flags))}",
                )
            )
    if account is None:
        problems.append(problem(ProblemKind.MISSING, "no such account on the ledger"))
        return problems
    if isinstance(expected, str):
        return problems
    ledger, code, flags = expected
    if account.ledger != ledger:
        problems.append(
            problem(ProblemKind.LEDGER_MISMATCH, f"on ledger {account.ledger}, expected {ledger}")
        )
    if account.code != int(code):
        problems.append(problem(ProblemKind.CODE_MISMATCH, f"code {account.code}, expected {int(code)}"))
    stored = int(account.flags)
    if stored & ~int(_MUTABLE_FLAGS) != int(flags):
        problems.append(
            problem(
                ProblemKind.FLAGS_MISMATCH,
                f"flags {_flag_names(stored & ~int(_MUTABLE_FLAGS))}, expected {_flag_names(int(flags))}",
            )
        )
    if stored & int(tb.AccountFlags.CLOSED):
        problems.append(problem(ProblemKind.CLOSED, "the account is closed"))
    return problems


async def verify(ledger: Ledger, conn: Conn, *, operator_currencies: Iterable[str] = ()) -> list[Problem]:
    """Check every account in `pm.tb_account_map` against the chart and the ledger; [] means all is well.

    For each mapped account: its id is `ids.account_id(...)` of its key, the map row agrees with the
    chart, and the ledger has the account with the chart's ledger, code and flags (the mutable
    `closed` flag aside; a closed account is reported as its own problem). With
    `operator_currencies`, also that every operator account of those currencies is mapped.
    """
    rows = await mapped_accounts(conn)
    problems: list[Problem] = []
    for start in range(0, len(rows), BATCH_MAX):
        chunk = rows[start : start + BATCH_MAX]
        found = {a.id: a for a in await ledger.lookup_accounts([r.account_id for r in chunk])}
        for row in chunk:
            problems.extend(check_account(row, found.get(row.account_id)))
    keys = {(r.owner_kind, r.owner_id, r.currency, r.code) for r in rows}
    for currency in operator_currencies:
        for spec in chart.operator_accounts(currency):
            if (spec.owner_kind, spec.owner_id, spec.currency, int(spec.code)) not in keys:
                problems.append(
                    Problem(
                        ProblemKind.UNMAPPED_OPERATOR,
                        spec_account(spec).id,
                        spec.owner_kind,
                        spec.owner_id,
                        spec.currency,
                        int(spec.code),
                        "not in pm.tb_account_map: run `pm ledger open-operator-accounts`",
                    )
                )
    return problems
