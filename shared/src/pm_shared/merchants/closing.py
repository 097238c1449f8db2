"""Closing a deactivated merchant's ledger accounts, and reopening them on reactivation (docs/ledger.md,
"Closing a merchant's accounts"; TigerBeetle's close-account recipe).

Close, per account, as one linked chain over all of the merchant's currencies (all or nothing):

1. a balancing transfer, merchant → suspense (`balancing_debit`, amount `AMOUNT_MAX`): the ledger moves
   whatever the account holds, so a closed account holds nothing;
2. a closing transfer, merchant → suspense, amount 0, `pending | closing_debit`: the account is closed
   (it refuses every transfer) for as long as this transfer stays pending.

Reopen, per account, again one chain: void the closing transfer (the account is open again), then
return what the balancing transfer moved, suspense → merchant. The suspense account (code 40, one
per ledger) holds closed merchants' money for them; nothing else moves it.

Both are sent through the ledger-writer like every ledger write. Their ids derive from the merchant,
the close's number (`pm.merchant.closings`) and the currency, so a repeat sends the same transfers
(the ledger answers EXISTS) and a crash at any point is finished by calling again. The merchant's
`accounts_state` (OPEN → CLOSING → CLOSED → REOPENING → OPEN) says which step is under way.

A close is refused while the merchant is active (deactivate first: its key is refused from then on)
or while intents still move its money (they finish first; a pending transfer on a closed account
could be neither posted nor voided).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import tigerbeetle as tb

from pm_shared import messages
from pm_shared.db import Pool
from pm_shared.ledger import accounts, chart, ids, opening
from pm_shared.ledger.api import Ledger
from pm_shared.merchants import queries, store
from pm_shared.streams import Publisher
from pm_shared.streams.names import LEDGER_COMMANDS

CLOSE_STEP = "close_merchant_accounts"
REOPEN_STEP = "reopen_merchant_accounts"
CLOSE_CODE = 40
"""The transfer code of a close's transfers (balancing and closing)."""
REOPEN_CODE = 41
"""The transfer code of a reopening's return of the balance (its void carries the close's code)."""
POLL_S = 0.05

OPEN = "OPEN"
CLOSING = "CLOSING"
CLOSED = "CLOSED"
REOPENING = "REOPENING"

_LINKED = int(tb.TransferFlags.LINKED)


class MerchantActiveError(Exception):
    """Only a deactivated merchant's accounts can be closed."""


class MerchantBusyError(Exception):
    """Intents still move the merchant's money: they finish first."""

    def __init__(self, in_flight: int) -> None:
        super().__init__(f"{in_flight} intents in flight")
        self.in_flight = in_flight


class SuspenseMissingError(Exception):
    """The ledger has no suspense account for one of the merchant's currencies yet (the ledger-writer
    opens the operator's accounts when it starts): nothing is closed until it does."""


class ReopeningError(Exception):
    """A reopening is under way: it is finished (by reactivating) before the accounts can close again."""


@dataclass(frozen=True)
class Legs:
    """The transfer ids of one account's close and reopening."""

    account: int
    suspense: int
    ledger: int
    balancing: int
    closing: int
    void: int
    returning: int


def _suspense(currency: str) -> chart.AccountSpec:
    return chart.AccountSpec(
        "operator", chart.Code.MERCHANT_SUSPENSE.name.lower(), currency, chart.Code.MERCHANT_SUSPENSE
    )


def legs(merchant: store.Merchant, currency: str, closing: int) -> Legs:
    spec = chart.AccountSpec(store.OWNER_KIND, merchant.merchant_id, currency, chart.Code.MERCHANT)
    suspense = _suspense(currency)
    name = f"merchant-accounts:{merchant.merchant_id}:{closing}"
    return Legs(
        account=accounts.spec_account(spec).id,
        suspense=accounts.spec_account(suspense).id,
        ledger=spec.ledger,
        balancing=ids.transfer_id(name, f"balance:{currency}"),
        closing=ids.transfer_id(name, f"close:{currency}"),
        void=ids.transfer_id(name, f"reopen:{currency}"),
        returning=ids.transfer_id(name, f"return:{currency}"),
    )


def _chain(transfers: list[messages.LedgerTransfer]) -> list[messages.LedgerTransfer]:
    """`transfers` as one linked chain: every one but the last carries `linked`."""
    last = len(transfers) - 1
    return [
        t if i == last else msgspec.structs.replace(t, flags=t.flags | _LINKED)
        for i, t in enumerate(transfers)
    ]


def close_transfers(all_legs: Sequence[Legs]) -> list[messages.LedgerTransfer]:
    """The close of every account in `all_legs`, as one chain (balancing, then closing, per account)."""
    transfers: list[messages.LedgerTransfer] = []
    for leg in all_legs:
        common = {"debit_account_id": leg.account, "credit_account_id": leg.suspense, "ledger": leg.ledger}
        transfers += [
            messages.LedgerTransfer(
                id=leg.balancing,
                amount=tb.AMOUNT_MAX,
                code=CLOSE_CODE,
                flags=int(tb.TransferFlags.BALANCING_DEBIT),
                **common,
            ),
            messages.LedgerTransfer(
                id=leg.closing,
                amount=0,
                code=CLOSE_CODE,
                flags=int(tb.TransferFlags.PENDING | tb.TransferFlags.CLOSING_DEBIT),
                **common,
            ),
        ]
    return _chain(transfers)


def reopen_transfers(all_legs: Sequence[tuple[Legs, int]]) -> list[messages.LedgerTransfer]:
    """The reopening of every account in `all_legs` (each with what its close moved), as one chain."""
    transfers: list[messages.LedgerTransfer] = []
    for leg, moved in all_legs:
        transfers += [
            messages.LedgerTransfer(
                # A void names only the pending transfer: its accounts, ledger and code are the
                # closing transfer's (a void that gives them must repeat them exactly).
                id=leg.void,
                pending_id=leg.closing,
                flags=int(tb.TransferFlags.VOID_PENDING_TRANSFER),
            ),
            messages.LedgerTransfer(
                id=leg.returning,
                debit_account_id=leg.suspense,
                credit_account_id=leg.account,
                amount=moved,
                ledger=leg.ledger,
                code=REOPEN_CODE,
            ),
        ]
    return _chain(transfers)


def _command(
    merchant: store.Merchant, step: str, transfers: list[messages.LedgerTransfer]
) -> messages.LedgerCommand:
    return messages.LedgerCommand(
        intent_id=f"merchant:{merchant.merchant_id}",
        message_id=f"{step}:{merchant.merchant_id}:{merchant.closings}",
        produced_at=messages.now(),
        step=step,
        transfers=transfers,
    )


@dataclass(frozen=True)
class Closer:
    """What a close or a reopening needs: the ledger (to look), the publisher (to ask the
    ledger-writer), the database, who acts, and how long to wait for the ledger-writer."""

    ledger: Ledger
    publisher: Publisher
    pool: Pool
    actor: str
    wait_s: float

    async def close(self, merchant_id: str) -> tuple[store.Merchant, bool]:
        """The merchant, and whether its accounts are closed now (False: on their way; call again).

        Raises MerchantNotFoundError, MerchantActiveError, MerchantBusyError or ReopeningError."""
        merchant = await self._begin_close(merchant_id)
        while merchant is None:  # moved meanwhile (reactivated, or another close began): look again
            merchant = await self._begin_close(merchant_id)
        if merchant.accounts_state == CLOSED:
            return merchant, True
        return await self._finish_close(merchant)

    async def _begin_close(self, merchant_id: str) -> store.Merchant | None:
        """The merchant with its close begun (or under way, or done); None when it moved meanwhile.
        (One connection at a time: the CLI's pool holds one.)"""
        async with self.pool.acquire() as conn:
            merchant = await store.get(conn, merchant_id)
            if merchant.accounts_state == REOPENING:
                raise ReopeningError(merchant_id)
            if merchant.accounts_state != OPEN:
                return merchant
            if merchant.active:
                raise MerchantActiveError(merchant_id)
            party = json.dumps({"kind": store.OWNER_KIND, "id": merchant_id})
            in_flight: int = await conn.fetchval(queries.COUNT_IN_FLIGHT, party)
            if in_flight:
                raise MerchantBusyError(in_flight)
            await self._check_suspense(merchant)
            row = await conn.fetchrow(queries.BEGIN_CLOSE, merchant_id)
        return None if row is None else store.merchant_of(row)

    async def _finish_close(self, merchant: store.Merchant) -> tuple[store.Merchant, bool]:
        all_legs = await self._opened_legs(merchant)
        closing_ids = [leg.closing for leg in all_legs]
        if not await self._all_there(
            closing_ids, ask=_command(merchant, CLOSE_STEP, close_transfers(all_legs))
        ):
            return merchant, False
        moved = await self._amounts([leg.balancing for leg in all_legs])
        detail: dict[str, object] = {
            "closing": merchant.closings,
            "moved": {c: a for c, a in zip(self._currencies(merchant, all_legs), moved, strict=True)},
        }
        return await self._finish(merchant, queries.FINISH_CLOSE, "accounts_closed", detail)

    async def reopen(self, merchant_id: str) -> tuple[store.Merchant, bool]:
        """The merchant, and whether its accounts are open now (False: on their way; call again)."""
        async with self.pool.acquire() as conn:
            merchant = await store.get(conn, merchant_id)
        if merchant.accounts_state == OPEN:
            return merchant, True
        if merchant.accounts_state == CLOSING:
            # The close may still be queued for the ledger-writer: it lands before it is undone.
            merchant, closed = await self._finish_close(merchant)
            if not closed:
                return merchant, False
        if merchant.accounts_state == CLOSED:
            async with self.pool.acquire() as conn:
                row = await conn.fetchrow(queries.BEGIN_REOPEN, merchant_id)
            if row is None:
                return await self.reopen(merchant_id)
            merchant = store.merchant_of(row)
        return await self._finish_reopen(merchant)

    async def _finish_reopen(self, merchant: store.Merchant) -> tuple[store.Merchant, bool]:
        # Only what was closed is reopened (an account opened after the close was never closed).
        candidates = [legs(merchant, c, merchant.closings) for c in merchant.currencies]
        found = {t.id: t for t in await self.ledger.lookup_transfers([leg.balancing for leg in candidates])}
        closed = [(leg, found[leg.balancing].amount) for leg in candidates if leg.balancing in found]
        returns = [leg.returning for leg, _ in closed]
        command = _command(merchant, REOPEN_STEP, reopen_transfers(closed))
        if closed and not await self._all_there(returns, ask=command):
            return merchant, False
        currencies = self._currencies(merchant, [leg for leg, _ in closed])
        detail: dict[str, object] = {
            "closing": merchant.closings,
            "returned": {c: moved for c, (_, moved) in zip(currencies, closed, strict=True)},
        }
        return await self._finish(merchant, queries.FINISH_REOPEN, "accounts_reopened", detail)

    async def _check_suspense(self, merchant: store.Merchant) -> None:
        wanted = [_suspense(c) for c in merchant.currencies]
        if len(await opening.existing(self.ledger, wanted)) < len(wanted):
            raise SuspenseMissingError(merchant.merchant_id)

    async def _opened_legs(self, merchant: store.Merchant) -> list[Legs]:
        """The legs of the merchant's accounts the ledger has (one never opened has nothing to close)."""
        opened = await opening.existing(self.ledger, store.account_specs(merchant))
        return [legs(merchant, spec.currency, merchant.closings) for spec in opened]

    @staticmethod
    def _currencies(merchant: store.Merchant, all_legs: Sequence[Legs]) -> list[str]:
        by_ledger = {chart.ledger_of(c): c for c in merchant.currencies}
        return [by_ledger[leg.ledger] for leg in all_legs]

    async def _all_there(self, transfer_ids: list[int], *, ask: messages.LedgerCommand) -> bool:
        """Whether the ledger has all of `transfer_ids`, after asking the ledger-writer (`ask`) for
        them if it did not, and waiting up to `wait_s`."""
        if len(await self.ledger.lookup_transfers(transfer_ids)) == len(transfer_ids):
            return True
        await self.publisher.publish(LEDGER_COMMANDS, ask)
        deadline = time.monotonic() + self.wait_s
        while time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            if len(await self.ledger.lookup_transfers(transfer_ids)) == len(transfer_ids):
                return True
        return False

    async def _amounts(self, transfer_ids: list[int]) -> list[int]:
        found = {t.id: t.amount for t in await self.ledger.lookup_transfers(transfer_ids)}
        return [found[i] for i in transfer_ids]

    async def _finish(
        self, merchant: store.Merchant, query: str, action: str, detail: dict[str, object]
    ) -> tuple[store.Merchant, bool]:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(query, merchant.merchant_id)
            if row is None:  # another caller finished it: what it is now
                return await store.get(conn, merchant.merchant_id), True
            await store.record(conn, merchant.merchant_id, action, self.actor, detail)
        return store.merchant_of(row), True
