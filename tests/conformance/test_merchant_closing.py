"""Closing a merchant's accounts and reopening them, exactly as PM sends them
(`pm_shared.merchants.closing`, checked and packed as the ledger-writer packs every command).

Rules: `balancing_debit` with `AMOUNT_MAX` moves what the debit account holds, net of its pending
debits (`debits_must_not_exceed_credits`); a `pending | closing_debit` transfer closes the debit
account; a closed account refuses new transfers either way; voiding the closing transfer reopens it,
and the linked chains apply whole or not at all. (TigerBeetle: docs/coding/recipes/close-account.md,
docs/reference/transfer.md §flags.balancing_debit, §flags.closing_debit.)
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
import tigerbeetle as tb

from pm_ledger_writer import packing
from pm_shared import messages
from pm_shared.ledger import accounts, chart
from pm_shared.ledger.api import LedgerSync
from pm_shared.merchants import closing, store

S = tb.CreateTransferStatus
Balance = tuple[int, int, int, int]
CURRENCIES = ("THB", "USD")


def merchant(closings: int = 1) -> store.Merchant:
    now = datetime.now(UTC)
    return store.Merchant(
        merchant_id=f"m-{uuid.uuid4().hex[:10]}",
        name="Bakery",
        status=store.INACTIVE,
        currencies=CURRENCIES,
        key_id="pk_" + "1" * 24,
        created_by="pk_" + "2" * 24,
        idempotency_key="k",
        request_hash=b"",
        created_at=now,
        updated_at=now,
        deactivated_at=now,
        closings=closings,
    )


def send(ledger: LedgerSync, transfers: list[messages.LedgerTransfer]) -> list[tb.CreateTransferStatus]:
    command = messages.LedgerCommand(
        intent_id="m", message_id="m", produced_at=messages.now(), step="x", transfers=transfers
    )
    packing.check(command)  # what the ledger-writer refuses, PM never sends
    return [r.status for r in ledger.create_transfers([packing.to_transfer(t) for t in transfers])]


def opened(ledger: LedgerSync, shop: store.Merchant) -> list[closing.Legs]:
    specs = store.account_specs(shop) + [
        chart.AccountSpec("operator", "merchant_suspense", c, chart.Code.MERCHANT_SUSPENSE)
        for c in CURRENCIES
    ]
    ledger.create_accounts([accounts.spec_account(s) for s in specs])  # the suspense may exist: EXISTS
    return [closing.legs(shop, c, shop.closings) for c in CURRENCIES]


def fund(ledger: LedgerSync, leg: closing.Legs, amount: int) -> None:
    # From the suspense account for brevity: any account on the ledger would do.
    fill = tb.Transfer(
        id=tb.id(), debit_account_id=leg.suspense, credit_account_id=leg.account, amount=amount,
        ledger=leg.ledger, code=1,
    )  # fmt: skip
    assert ledger.create_transfers([fill])[0].status == S.CREATED


def closed(ledger: LedgerSync, account_id: int) -> bool:
    return bool(ledger.lookup_accounts([account_id])[0].flags & tb.AccountFlags.CLOSED)


def test_a_merchant_closes_with_its_balance_moved_and_reopens_with_it_back(
    ledger: LedgerSync, balance: Callable[[int], Balance]
) -> None:
    shop = merchant()
    thb, usd = opened(ledger, shop)
    fund(ledger, thb, 12_345)  # USD holds nothing: its balancing transfer moves 0
    suspense_before = balance(thb.suspense)
    assert send(ledger, closing.close_transfers([thb, usd])) == [S.CREATED] * 4
    moved = {t.id: t.amount for t in ledger.lookup_transfers([thb.balancing, usd.balancing])}
    assert moved == {thb.balancing: 12_345, usd.balancing: 0}
    assert closed(ledger, thb.account) and closed(ledger, usd.account)
    assert balance(thb.account) == (0, 12_345, 0, 12_345)
    assert balance(thb.suspense)[3] == suspense_before[3] + 12_345
    # A closed account refuses money either way.
    pay_in = tb.Transfer(id=tb.id(), debit_account_id=thb.suspense, credit_account_id=thb.account, amount=1,
                         ledger=thb.ledger, code=1)  # fmt: skip
    assert [r.status for r in ledger.create_transfers([pay_in])] == [S.CREDIT_ACCOUNT_ALREADY_CLOSED]
    # The same close again (a repeat after a crash) changes nothing: the chain stops at the first
    # transfer that exists (a balancing transfer exists as sent when it moved no more than asked).
    assert send(ledger, closing.close_transfers([thb, usd])) == [S.EXISTS] + [S.LINKED_EVENT_FAILED] * 3
    assert balance(thb.account) == (0, 12_345, 0, 12_345)

    reopening = closing.reopen_transfers([(thb, 12_345), (usd, 0)])
    assert send(ledger, reopening) == [S.CREATED] * 4
    assert not closed(ledger, thb.account) and not closed(ledger, usd.account)
    assert balance(thb.account) == (0, 12_345, 0, 24_690)
    assert balance(thb.suspense)[3] - balance(thb.suspense)[1] == suspense_before[3] - suspense_before[1]
    assert send(ledger, reopening) == [S.EXISTS] + [S.LINKED_EVENT_FAILED] * 3
    assert balance(thb.account) == (0, 12_345, 0, 24_690)


def test_the_next_close_has_transfers_of_its_own(ledger: LedgerSync) -> None:
    shop = merchant()
    first = opened(ledger, shop)
    assert send(ledger, closing.close_transfers(first)) == [S.CREATED] * 4
    assert send(ledger, closing.reopen_transfers([(leg, 0) for leg in first])) == [S.CREATED] * 4
    again = dataclasses.replace(shop, closings=2)
    second = [closing.legs(again, c, again.closings) for c in CURRENCIES]
    assert {leg.closing for leg in second}.isdisjoint({leg.closing for leg in first})
    assert send(ledger, closing.close_transfers(second)) == [S.CREATED] * 4
    assert all(closed(ledger, leg.account) for leg in second)


def test_pending_debits_stay_behind_and_the_chain_is_all_or_nothing(ledger: LedgerSync) -> None:
    shop = merchant()
    thb, usd = opened(ledger, shop)
    fund(ledger, thb, 1_000)
    hold = tb.Transfer(id=tb.id(), debit_account_id=thb.account, credit_account_id=thb.suspense, amount=300,
                       ledger=thb.ledger, code=1, flags=tb.TransferFlags.PENDING)  # fmt: skip
    assert ledger.create_transfers([hold])[0].status == S.CREATED
    # USD already closed (by someone else): the whole chain fails, THB stays open and untouched.
    other = tb.Transfer(id=tb.id(), debit_account_id=usd.account, credit_account_id=usd.suspense, amount=0,
                        ledger=usd.ledger, code=1,
                        flags=tb.TransferFlags.PENDING | tb.TransferFlags.CLOSING_DEBIT)  # fmt: skip
    assert ledger.create_transfers([other])[0].status == S.CREATED
    statuses = send(ledger, closing.close_transfers([thb, usd]))
    assert statuses[:2] == [S.LINKED_EVENT_FAILED] * 2 and S.CREATED not in statuses
    assert not closed(ledger, thb.account)
    # With USD reopened, the close moves only what is not held by the pending debit.
    void = tb.Transfer(id=tb.id(), pending_id=other.id, flags=tb.TransferFlags.VOID_PENDING_TRANSFER)
    assert ledger.create_transfers([void])[0].status == S.CREATED
    retry = dataclasses.replace(shop, closings=2)
    legs = [closing.legs(retry, c, retry.closings) for c in CURRENCIES]
    assert send(ledger, closing.close_transfers(legs)) == [S.CREATED] * 4
    assert ledger.lookup_transfers([legs[0].balancing])[0].amount == 700


@pytest.mark.parametrize("count", [1, 3])
def test_every_account_but_the_last_is_linked(count: int) -> None:
    shop = merchant()
    legs = [closing.legs(shop, c, 1) for c in ("THB", "USD", "RUB")[:count]]
    for transfers in (closing.close_transfers(legs), closing.reopen_transfers([(leg, 5) for leg in legs])):
        linked = [bool(t.flags & tb.TransferFlags.LINKED) for t in transfers]
        assert linked == [True] * (2 * count - 1) + [False]
