"""Amounts in major units for people to read: integer arithmetic on minor units, never a float."""

from __future__ import annotations

from pm_shared.ledger import chart


def major(minor: int, currency: str) -> str:
    """`minor` units of `currency` in major units with thousands separators: `1,234.56` for 123456 THB.

    A currency PM has no exponent for (chart.MINOR_DIGITS) is shown as the integer it is, with
    `(minor units)`, rather than with a guessed exponent.
    """
    digits = chart.MINOR_DIGITS.get(currency)
    if digits is None:
        return f"{minor:,} (minor units)"
    sign = "-" if minor < 0 else ""
    whole, fraction = divmod(abs(minor), 10**digits)
    if digits == 0:
        return f"{sign}{whole:,}"
    return f"{sign}{whole:,}.{fraction:0{digits}d}"
