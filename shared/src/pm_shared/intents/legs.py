"""An intent's ledger legs (docs/ledger.md): which transfers authorize, settle and void it.

Every id is `ids.transfer_id(intent id, leg name)`, so a step sent twice names the same transfers and
the ledger answers the repeat with EXISTS. Legs: "principal" and one "fee:<rule id>" per fee. PRE fees
are reserved with the principal (pending); POST fees are plain transfers made when settling.

- authorize: the principal and the PRE fees, pending, as one linked chain (all or nothing); a route
  without `authorize` (a top-up) holds nothing, so all its legs are made when it settles;
- settle: post each pending leg with its exact amount, then the POST fees, as one linked chain, so a
  POST fee the payer cannot pay leaves the authorization open (to be voided) rather than half-settled;
- void: each pending leg on its own (one already voided or expired does not hold up the others).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import tigerbeetle as tb

from pm_shared.intents.record import IntentRow, Side, StoredFee
from pm_shared.ledger import chart, ids
from pm_shared.messages import LedgerTransfer

PRINCIPAL = "principal"
SPREAD = "spread"
"""An exchange's spread, in the sold currency, to fee revenue."""
BUY = "buy"
"""An exchange's bought amount, from the liquidity account of the bought currency."""

# Transfer codes: what kind of money movement a ledger transfer is (its `code`).
TRANSFER_CODES: dict[str, int] = {
    "P2P": 1,
    "ADJUSTMENT": 2,
    "PROMPTPAY_WITHDRAWAL": 3,
    "SBP_TOPUP": 4,
    "MINIAPP_CHARGE": 5,
    "MINIAPP_CREDIT": 6,
    "FX_EXCHANGE": 7,
    "REFUND": 8,
}
FEE_TRANSFER_CODE = 10

_LINKED = int(tb.TransferFlags.LINKED)
_PENDING = int(tb.TransferFlags.PENDING)
_POST = int(tb.TransferFlags.POST_PENDING_TRANSFER)
_VOID = int(tb.TransferFlags.VOID_PENDING_TRANSFER)


class LegError(ValueError):
    """The intent cannot be put on the ledger as it stands (a party or fee account PM has no account for)."""


@dataclass(frozen=True)
class Account:
    """A ledger account a leg touches, with its owner (for `pm.account_balance`)."""

    id: int
    owner_kind: str
    owner_id: str
    currency: str
    code: int
    ledger: int = 0
    """The ledger of `currency` (`chart.ledger_of`)."""


@dataclass(frozen=True)
class Leg:
    name: str
    debit: Account
    credit: Account
    amount: int
    pending: bool
    """Reserved at authorization (principal and PRE fees), rather than made at settlement."""
    id: int
    """Its transfer id: `ids.transfer_id(intent id, name)`."""

    def transfer_id(self, intent_id: str, suffix: str = "") -> int:
        return self.id if not suffix else ids.transfer_id(intent_id, self.name + suffix)


# Account ids are hashes: the same few thousand wallets and a handful of operator accounts are asked
# for again and again, so they are remembered.
@functools.lru_cache(maxsize=65_536)
def _account(owner_kind: str, owner_id: str, currency: str, code: chart.Code) -> Account:
    ledger = chart.ledger_of(currency)
    return Account(
        ids.account_id(owner_kind, owner_id, ledger, int(code)), owner_kind, owner_id, currency, code, ledger
    )


def wallet(user_id: str, currency: str) -> Account:
    return _account("user", user_id, currency, chart.Code.USER_WALLET)


def operator(code: chart.Code, currency: str) -> Account:
    return _account("operator", code.name.lower(), currency, code)


def party_account(side: Side, currency: str) -> Account:
    """The account that pays or receives for one side of an intent."""
    if side.kind == "user" and side.id:
        return wallet(side.id, currency)
    if side.kind == "operator":
        return operator(chart.Code.OPERATOR_EQUITY, currency)
    if side.kind == "merchant" and side.id:
        # Opened when the merchant was onboarded (pm_shared.merchants): one per currency it takes.
        return _account("merchant", side.id, currency, chart.Code.MERCHANT)
    if side.kind in ("promptpay", "thaiqr"):
        return operator(chart.Code.IPPS_CLEARING, currency)
    if side.kind == "sbp":
        return operator(chart.Code.QP_CLEARING, currency)
    if side.kind == "liquidity":
        return operator(chart.Code.FX_LIQUIDITY, currency)
    raise LegError(f"no ledger account for a {side.kind!r} party")


def fee_account(fee: StoredFee, currency: str) -> Account:
    try:
        code = chart.Code(fee.fee_account_code)
    except ValueError:
        raise LegError(
            f"fee rule {fee.rule_id!r}: account code {fee.fee_account_code} is not in the chart"
        ) from None
    if code not in chart.OPERATOR_CODES:
        raise LegError(f"fee rule {fee.rule_id!r}: account code {int(code)} is not an operator account")
    return operator(code, currency)


def holds(intent: IntentRow) -> bool:
    """Whether the intent's route authorizes (holds money pending) before it settles. A top-up does
    not: the money arrives through the PSP, so its legs are made outright when it settles."""
    return intent.route is None or "authorize" in intent.route


def _exchange_legs(intent: IntentRow, source: Account, held: bool) -> list[Leg]:
    """An exchange, as TigerBeetle's currency-exchange recipe lays it out: the principal into the
    liquidity account of the sold currency, the spread to fee revenue (its own transfer, so the ledger
    records it), and the bought amount out of the liquidity account of the other currency."""
    fx = intent.exchange
    assert fx is not None
    sold, bought = intent.currency, fx.buy_currency
    target = party_account(intent.target, bought)

    def leg(name: str, debit: Account, credit: Account, amount: int) -> Leg:
        return Leg(name, debit, credit, amount, held, ids.transfer_id(intent.id, name))

    spread = [leg(SPREAD, source, operator(chart.Code.FEE_REVENUE, sold), fx.spread)] if fx.spread else []
    return [
        leg(PRINCIPAL, source, operator(chart.Code.FX_LIQUIDITY, sold), fx.principal),
        *spread,
        leg(BUY, operator(chart.Code.FX_LIQUIDITY, bought), target, fx.buy_amount),
    ]


def legs(intent: IntentRow, fees: Sequence[StoredFee] | None = None) -> list[Leg]:
    """The principal (an exchange's three legs), then each fee in priority order (`fees` defaults to
    those stamped on the intent)."""
    source = party_account(intent.source, intent.currency)
    held = holds(intent)
    if intent.exchange is not None:
        out = _exchange_legs(intent, source, held)
    else:
        target = party_account(intent.target, intent.currency)
        out = [Leg(PRINCIPAL, source, target, intent.amount, held, ids.transfer_id(intent.id, PRINCIPAL))]
    for fee in intent.fees if fees is None else fees:
        # A fee is in the intent's currency: an exchange's payee pays its fees from that wallet too.
        payer = source if fee.payer == "source" else party_account(intent.target, intent.currency)
        name = f"fee:{fee.rule_id}"
        out.append(
            Leg(
                name,
                payer,
                fee_account(fee, intent.currency),
                fee.amount,
                held and fee.timing == "PRE",
                ids.transfer_id(intent.id, name),
            )
        )
    return out


def _user_data(intent: IntentRow) -> int:
    # Asked once per list of transfers, not per transfer: parsing the UUID's text is most of the cost.
    return uuid.UUID(intent.id).int


def _code(intent: IntentRow, leg: Leg) -> int:
    if leg.name in (PRINCIPAL, BUY):
        return TRANSFER_CODES.get(intent.type, 99)
    return FEE_TRANSFER_CODE  # fees, and an exchange's spread


def _ledger(leg: Leg) -> int:
    # Both accounts of a transfer are on one ledger; an exchange's legs are on two.
    return leg.debit.ledger or chart.ledger_of(leg.debit.currency)


def _linked(i: int, count: int) -> int:
    """The flag that links transfer `i` of a chain of `count` to the next (the last closes it)."""
    return _LINKED if i < count - 1 else 0


def authorize(intent: IntentRow, all_legs: Iterable[Leg], *, timeout_s: int) -> list[LedgerTransfer]:
    """The pending legs as one linked chain."""
    held = [leg for leg in all_legs if leg.pending]
    user_data = _user_data(intent)
    return [
        LedgerTransfer(
            id=leg.id,
            debit_account_id=leg.debit.id,
            credit_account_id=leg.credit.id,
            amount=leg.amount,
            user_data_128=user_data,
            timeout=timeout_s,
            ledger=_ledger(leg),
            code=_code(intent, leg),
            flags=_PENDING | _linked(i, len(held)),
        )
        for i, leg in enumerate(held)
    ]


def _resolve(
    intent: IntentRow, held: Sequence[Leg], suffix: str, flags: int, chain_of: int = 0
) -> list[LedgerTransfer]:
    """Post (or void) each pending leg of `held` with its exact amount (never AMOUNT_MAX: a retry must
    match); linked as the first of a chain of `chain_of` transfers (0: not linked)."""
    user_data = _user_data(intent)
    return [
        LedgerTransfer(
            id=leg.transfer_id(intent.id, suffix),
            pending_id=leg.id,
            amount=leg.amount,
            user_data_128=user_data,
            ledger=_ledger(leg),
            code=_code(intent, leg),
            flags=flags | (_linked(i, chain_of) if chain_of else 0),
        )
        for i, leg in enumerate(held)
    ]


def settle(intent: IntentRow, all_legs: Iterable[Leg]) -> list[LedgerTransfer]:
    """The posts of the pending legs, then the direct legs, as one linked chain."""
    listed = list(all_legs)
    held = [leg for leg in listed if leg.pending]
    direct = [leg for leg in listed if not leg.pending]
    count = len(held) + len(direct)
    user_data = _user_data(intent)
    return _resolve(intent, held, ":post", _POST, count) + [
        LedgerTransfer(
            id=leg.id,
            debit_account_id=leg.debit.id,
            credit_account_id=leg.credit.id,
            amount=leg.amount,
            user_data_128=user_data,
            ledger=_ledger(leg),
            code=_code(intent, leg),
            flags=_linked(len(held) + i, count),
        )
        for i, leg in enumerate(direct)
    ]


def void(intent: IntentRow, all_legs: Iterable[Leg]) -> list[LedgerTransfer]:
    """Each pending leg voided on its own (not linked)."""
    return _resolve(intent, [leg for leg in all_legs if leg.pending], ":void", _VOID)


def display(intent_id: str, all_legs: Iterable[Leg], state: str) -> list[dict[str, object]]:
    """The legs as `pm.intent.legs` shows them (the API's `Leg`): name, transfer id, amount, state.

    `state` is where the intent stands: "requested" (authorize sent), "pending" (authorized),
    "posted" (settled), "voided" or "failed".
    """
    out: list[dict[str, object]] = []
    for leg in all_legs:
        leg_state = state
        if not leg.pending and state in ("requested", "pending"):
            leg_state = "planned"  # a POST fee is made only when settling
        elif not leg.pending and state == "voided":
            leg_state = "failed"
        out.append(
            {
                "name": leg.name,
                "transferId": str(leg.transfer_id(intent_id)),
                "amount": leg.amount,
                "state": leg_state,
            }
        )
    return out
