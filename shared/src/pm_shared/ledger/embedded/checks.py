"""The official client's own checks (batch size, field ranges) and the validity of query filters."""

from __future__ import annotations

from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared.ledger.api import BATCH_MAX
from pm_shared.ledger.embedded.model import TS_MAX, U128_MAX

_M128 = U128_MAX
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
_M16 = (1 << 16) - 1

_ACCOUNT_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", _M128),
    ("debits_pending", _M128),
    ("debits_posted", _M128),
    ("credits_pending", _M128),
    ("credits_posted", _M128),
    ("user_data_128", _M128),
    ("user_data_64", _M64),
    ("user_data_32", _M32),
    ("ledger", _M32),
    ("code", _M16),
    ("timestamp", _M64),
)
_TRANSFER_FIELDS: tuple[tuple[str, int], ...] = (
    ("id", _M128),
    ("debit_account_id", _M128),
    ("credit_account_id", _M128),
    ("amount", _M128),
    ("pending_id", _M128),
    ("user_data_128", _M128),
    ("user_data_64", _M64),
    ("user_data_32", _M32),
    ("timeout", _M32),
    ("ledger", _M32),
    ("code", _M16),
    ("timestamp", _M64),
)
_ACCOUNT_FILTER_FIELDS: tuple[tuple[str, int], ...] = (
    ("account_id", _M128),
    ("user_data_128", _M128),
    ("user_data_64", _M64),
    ("user_data_32", _M32),
    ("code", _M16),
    ("timestamp_min", _M64),
    ("timestamp_max", _M64),
    ("limit", _M32),
)
_QUERY_FILTER_FIELDS: tuple[tuple[str, int], ...] = (
    ("user_data_128", _M128),
    ("user_data_64", _M64),
    ("user_data_32", _M32),
    ("ledger", _M32),
    ("code", _M16),
    ("timestamp_min", _M64),
    ("timestamp_max", _M64),
    ("limit", _M32),
)


# `flags` are not range-checked by the official client: ctypes truncates them to their width (u16 for
# events, u32 for filters), and so does the engine. Lookup ids are truncated to u128 likewise.


def _overflow(name: str, value: int, limit: int) -> tb.IntegerOverflowError:
    # The wording of tigerbeetle.lib.validate_uint.
    if value < 0:
        return tb.IntegerOverflowError(f"{name}=={value} cannot be negative")
    bits = limit.bit_length()
    return tb.IntegerOverflowError(f"{name}=={value} is too large to fit in {bits} bits")


def _check_fields(obj: object, fields: tuple[tuple[str, int], ...]) -> None:
    for name, limit in fields:
        value = getattr(obj, name)
        if not 0 <= value <= limit:
            raise _overflow(name, value, limit)


def check_batch(events: Sequence[object], batch_max: int, *, transfers: bool) -> None:
    """TooMuchDataError for an oversized batch, IntegerOverflowError for a field out of its range."""
    if len(events) > batch_max:
        raise tb.TooMuchDataError()
    fields = _TRANSFER_FIELDS if transfers else _ACCOUNT_FIELDS
    for event in events:
        _check_fields(event, fields)


def check_ids(ids: Sequence[int], batch_max: int) -> None:
    if len(ids) > batch_max:
        raise tb.TooMuchDataError()


def check_account_filter(f: tb.AccountFilter) -> None:
    _check_fields(f, _ACCOUNT_FILTER_FIELDS)
    # The query limit is capped at 8189 whatever the request size.
    if f.limit > BATCH_MAX:
        raise tb.TooMuchDataError()


def check_query_filter(f: tb.QueryFilter) -> None:
    _check_fields(f, _QUERY_FILTER_FIELDS)
    if f.limit > BATCH_MAX:
        raise tb.TooMuchDataError()


def _timestamps_valid(tmin: int, tmax: int) -> bool:
    return tmin <= TS_MAX and tmax <= TS_MAX and (tmax == 0 or tmin <= tmax)


def account_filter_valid(f: tb.AccountFilter) -> bool:
    """Whether an account filter is valid; an invalid filter yields [] rather than an error."""
    flags = int(f.flags) & _M32
    return (
        f.account_id not in (0, U128_MAX)
        and _timestamps_valid(f.timestamp_min, f.timestamp_max)
        and f.limit != 0
        and bool(flags & (tb.AccountFilterFlags.DEBITS | tb.AccountFilterFlags.CREDITS))
        and not flags & ~0x7
    )


def query_filter_valid(f: tb.QueryFilter) -> bool:
    """Whether a query filter is valid (as for `account_filter_valid`)."""
    return (
        _timestamps_valid(f.timestamp_min, f.timestamp_max)
        and f.limit != 0
        and not int(f.flags) & _M32 & ~0x1
    )
