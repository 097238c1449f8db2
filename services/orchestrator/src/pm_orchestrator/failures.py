"""Failure codes an intent can end with (`pm.intent.failure_code`), and how ledger answers map to them."""

from __future__ import annotations

from dataclasses import dataclass

from pm_shared.fees import FEE_EXCESSIVE, FEE_INVALID, FEE_RULE_ERROR
from pm_shared.messages import LedgerEventResult, LedgerResult, PspResult

ACCOUNT_NOT_FOUND = "ACCOUNT_NOT_FOUND"
ACCOUNT_CLOSED = "ACCOUNT_CLOSED"
INSUFFICIENT_FUNDS = "INSUFFICIENT_FUNDS"
LIQUIDITY_INSUFFICIENT = "LIQUIDITY_INSUFFICIENT"
"""An exchange the operator's liquidity in the bought currency cannot cover."""
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
AUTHORIZATION_EXPIRED = "AUTHORIZATION_EXPIRED"
ROUTE_UNAVAILABLE = "ROUTE_UNAVAILABLE"
LEDGER_REJECTED = "LEDGER_REJECTED"
INVALID_INTENT = "INVALID_INTENT"
# A PSP's final "no" (the PSP's own code is kept in the reason).
PAYEE_INVALID = "PAYEE_INVALID"
PSP_DECLINED = "PSP_DECLINED"
PSP_UNREACHABLE = "PSP_UNREACHABLE"
PAYMENT_REJECTED = "PAYMENT_REJECTED"
PAYMENT_EXPIRED = "PAYMENT_EXPIRED"

CODES = frozenset(
    {
        ACCOUNT_NOT_FOUND,
        ACCOUNT_CLOSED,
        INSUFFICIENT_FUNDS,
        LIQUIDITY_INSUFFICIENT,
        LIMIT_EXCEEDED,
        AUTHORIZATION_EXPIRED,
        ROUTE_UNAVAILABLE,
        LEDGER_REJECTED,
        INVALID_INTENT,
        PAYEE_INVALID,
        PSP_DECLINED,
        PSP_UNREACHABLE,
        PAYMENT_REJECTED,
        PAYMENT_EXPIRED,
        FEE_RULE_ERROR,
        FEE_INVALID,
        FEE_EXCESSIVE,
    }
)

# Ledger statuses (tigerbeetle CreateTransferStatus names) that say something about the customer's
# request rather than about PM; everything else is LEDGER_REJECTED (a bug or an operator matter).
_BY_STATUS = {
    "EXCEEDS_CREDITS": INSUFFICIENT_FUNDS,
    "EXCEEDS_DEBITS": INSUFFICIENT_FUNDS,
    "DEBIT_ACCOUNT_NOT_FOUND": ACCOUNT_NOT_FOUND,
    "CREDIT_ACCOUNT_NOT_FOUND": ACCOUNT_NOT_FOUND,
    "DEBIT_ACCOUNT_ALREADY_CLOSED": ACCOUNT_CLOSED,
    "CREDIT_ACCOUNT_ALREADY_CLOSED": ACCOUNT_CLOSED,
    "PENDING_TRANSFER_EXPIRED": AUTHORIZATION_EXPIRED,
    "PENDING_TRANSFER_NOT_FOUND": AUTHORIZATION_EXPIRED,
}

# Statuses a transfer of a failed chain reports because *another* event of the chain failed.
_KNOCK_ON = frozenset({"LINKED_EVENT_FAILED", "LINKED_EVENT_CHAIN_OPEN"})
_SUCCESS = frozenset({"CREATED", "EXISTS"})

ID_ALREADY_FAILED = "ID_ALREADY_FAILED"


@dataclass(frozen=True)
class Failure:
    code: str
    reason: str


def cause_event(result: LedgerResult) -> LedgerEventResult | None:
    """The event that made the command fail (not one that failed along with it)."""
    failed = [e for e in (*result.accounts, *result.transfers) if e.status not in _SUCCESS]
    for event in failed:
        if event.status not in _KNOCK_ON:
            return event
    return failed[0] if failed else None


def lost_first_answer(result: LedgerResult) -> bool:
    """True for a retry the ledger answered ID_ALREADY_FAILED without the writer finding what the
    first attempt failed with: the first answer, if it is still on its way, carries the reason."""
    event = cause_event(result)
    return event is not None and event.status == ID_ALREADY_FAILED and event.first_failure is None


def from_ledger(result: LedgerResult, liquidity: frozenset[int] = frozenset()) -> Failure:
    """The failure a refused ledger command stands for; `liquidity`: the ids of transfers paid out of
    the operator's liquidity (an exchange's bought amount), whose overdraft is LIQUIDITY_INSUFFICIENT."""
    failure = _from_ledger(result)
    event = cause_event(result)
    if failure.code == INSUFFICIENT_FUNDS and event is not None and event.id in liquidity:
        return Failure(LIQUIDITY_INSUFFICIENT, f"{failure.reason} (the liquidity account)")
    return failure


def _from_ledger(result: LedgerResult) -> Failure:
    if result.error is not None:
        return Failure(
            LEDGER_REJECTED, f"the ledger-writer refused the {result.step} command: {result.error}"
        )
    event = cause_event(result)
    if event is None:
        return Failure(LEDGER_REJECTED, f"the {result.step} command failed without a failing event")
    if event.status == ID_ALREADY_FAILED and event.first_failure is not None:
        # The first attempt's answer was lost (a writer died before publishing it); the writer
        # inferred its status from the accounts.
        return Failure(
            _BY_STATUS.get(event.first_failure, LEDGER_REJECTED),
            f"{result.step}: the ledger answered {event.status}; the first attempt failed with "
            f"{event.first_failure} (inferred from the accounts, its answer was lost)",
        )
    code = _BY_STATUS.get(event.status, LEDGER_REJECTED)
    return Failure(code, f"{result.step}: the ledger answered {event.status}")


# PSP codes (docs/psp.md; the adapters pass them on) that say the payee cannot be paid as given, or
# what the payer did; any other final "no" is PSP_DECLINED. `JOB_DEAD_LETTERED` and `NOT_EXECUTED`
# are PM's own: the job never reached the PSP (it was dead-lettered first), or its confirm never took there.
_BY_PSP_CODE = {
    "INVALID_TARGET": PAYEE_INVALID,
    "INVALID_PROXY": PAYEE_INVALID,
    "PROXY_NOT_FOUND": PAYEE_INVALID,
    "ACCOUNT_CLOSED": PAYEE_INVALID,
    "BANK_UNSUPPORTED": PAYEE_INVALID,
    "RECEIVER_REJECTED": PAYEE_INVALID,
    "REJECTED": PAYMENT_REJECTED,
    "EXPIRED": PAYMENT_EXPIRED,
    "JOB_DEAD_LETTERED": PSP_UNREACHABLE,
    "NOT_EXECUTED": PSP_UNREACHABLE,
}


def from_psp(result: PspResult) -> Failure:
    """The failure a PSP's final FAILED result means for its intent."""
    code = result.failure_code or "UNSPECIFIED"
    reason = f"{result.psp}: {code}"
    if result.detail:
        reason += f" ({result.detail})"
    return Failure(_BY_PSP_CODE.get(code, PSP_DECLINED), reason)
