"""The chart of accounts: ledgers per currency, account codes, and the flags each code carries.

See docs/ledger.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import tigerbeetle as tb

# One ledger per currency, numbered by its ISO 4217 numeric code.
LEDGERS: dict[str, int] = {"THB": 764, "USD": 840, "RUB": 643}
# Minor units per major unit, for display only (amounts are always integers in minor units).
MINOR_DIGITS: dict[str, int] = {"THB": 2, "USD": 2, "RUB": 2}


class Code(IntEnum):
    """The `code` of every ledger account."""

    USER_WALLET = 1
    MERCHANT = 2
    FEE_REVENUE = 10
    IPPS_CLEARING = 20
    QP_CLEARING = 21
    FX_LIQUIDITY = 30
    MERCHANT_SUSPENSE = 40
    OPERATOR_EQUITY = 90


# Wallets hold customers' money: they may never go below zero, and keep balance history for statements.
FLAGS: dict[Code, tb.AccountFlags] = {
    Code.USER_WALLET: tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | tb.AccountFlags.HISTORY,
    Code.MERCHANT: tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | tb.AccountFlags.HISTORY,
    Code.FEE_REVENUE: tb.AccountFlags.HISTORY,
    Code.IPPS_CLEARING: tb.AccountFlags.HISTORY,
    Code.QP_CLEARING: tb.AccountFlags.HISTORY,
    # Liquidity must exist before it is paid out: a missing leg fails the whole FX chain.
    Code.FX_LIQUIDITY: tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | tb.AccountFlags.HISTORY,
    # What closed merchant accounts held, kept until they reopen (the close-account recipe's control).
    Code.MERCHANT_SUSPENSE: tb.AccountFlags.HISTORY,
    Code.OPERATOR_EQUITY: tb.AccountFlags.HISTORY,
}

# The operator's accounts, opened on every ledger at start; owner kind "operator", owner id = the code's name.
OPERATOR_CODES: tuple[Code, ...] = (
    Code.FEE_REVENUE,
    Code.IPPS_CLEARING,
    Code.QP_CLEARING,
    Code.FX_LIQUIDITY,
    Code.MERCHANT_SUSPENSE,
    Code.OPERATOR_EQUITY,
)


class UnknownCurrencyError(ValueError):
    """A currency PM keeps no ledger for."""


def ledger_of(currency: str) -> int:
    try:
        return LEDGERS[currency]
    except KeyError:
        known = ", ".join(sorted(LEDGERS))
        raise UnknownCurrencyError(f"no ledger for currency {currency!r} (known: {known})") from None


def currency_of(ledger: int) -> str:
    for currency, number in LEDGERS.items():
        if number == ledger:
            return currency
    raise UnknownCurrencyError(f"no currency for ledger {ledger}")


@dataclass(frozen=True)
class AccountSpec:
    """What an account must look like: the verifier compares the ledger's account with this."""

    owner_kind: str
    owner_id: str
    currency: str
    code: Code

    @property
    def ledger(self) -> int:
        return ledger_of(self.currency)

    @property
    def flags(self) -> tb.AccountFlags:
        return FLAGS[self.code]


def operator_accounts(currency: str) -> list[AccountSpec]:
    return [AccountSpec("operator", code.name.lower(), currency, code) for code in OPERATOR_CODES]
