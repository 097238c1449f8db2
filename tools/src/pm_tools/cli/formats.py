"""How the `pm` commands show amounts, ledger codes, flags, timestamps and ages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import tigerbeetle as tb

from pm_shared.ledger import chart


def currency_of(ledger: int) -> str | None:
    try:
        return chart.currency_of(ledger)
    except chart.UnknownCurrencyError:
        return None


def format_amount(minor: int, currency: str | None) -> str:
    """`minor` units as major units with thousands separators and the currency: `1,234.56 THB`.

    A ledger PM has no currency for shows the integer with `(minor units)`.
    """
    if currency is None:
        return f"{minor:,} (minor units)"
    digits = chart.MINOR_DIGITS.get(currency, 0)
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    if digits == 0:
        return f"{sign}{whole:,} {currency}"
    return f"{sign}{whole:,}.{fraction:0{digits}d} {currency}"


def format_timestamp(ns: int) -> str:
    """A ledger timestamp (nanoseconds since the Unix epoch) as UTC, to the microsecond."""
    when = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1_000)
    return when.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def flag_names(flags: int, kind: type[tb.AccountFlags] | type[tb.TransferFlags]) -> str:
    names = [f.name.lower() for f in kind if f.value and f.name and flags & f.value == f.value]
    return ", ".join(names) or "-"


def code_name(code: int) -> str:
    try:
        return f"{code} ({chart.Code(code).name.lower()})"
    except ValueError:
        return str(code)


def ledger_name(ledger: int) -> str:
    currency = currency_of(ledger)
    return f"{ledger} ({currency})" if currency else str(ledger)


def human_age(seconds: float | None) -> str:
    """1.2s, 3m4s, 2h5m, 3d4h; an em dash when there is nothing pending."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"
