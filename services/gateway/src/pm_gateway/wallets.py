"""`POST /v1/wallets`, `GET /v1/wallets/{ownerId}` and its history (docs/api.md).

A wallet is opened by the ledger-writer, like every other write to the ledger: the gateway sends a
command with the account (its id is deterministic, so a repeat is harmless), waits a little for
the account to appear, and then records it in `pm.tb_account_map`. Balances are read from the
ledger; the history from `pm.tx_history`.
"""

from __future__ import annotations

import tigerbeetle as tb
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import Balance, HistoryEntry, HistoryPage, OpenWallet, Wallet
from pm_gateway import cursors, opening, web
from pm_gateway import queries as q
from pm_gateway.auth import require_owner
from pm_gateway.problems import ProblemError
from pm_shared.ledger import chart


def _balance(currency: str, account: tb.Account) -> Balance:
    posted = account.credits_posted - account.debits_posted
    return Balance(
        currency=currency,
        available=posted - account.debits_pending,
        pending=account.debits_pending,
        posted=posted,
    )


async def open_wallet(request: Request) -> Response:
    d = web.deps(request)
    wanted: OpenWallet = web.inputs(request).body
    require_owner(await web.caller(request), wanted.owner_id)
    spec = chart.AccountSpec(wanted.owner_kind, wanted.owner_id, wanted.currency, chart.Code.USER_WALLET)
    found = await opening.open_accounts(d, [spec])
    if spec not in found:
        # The command is on its way; a repeat of this request answers once the writer has opened it.
        wallet = Wallet(owner_id=wanted.owner_id, balances=[])
        return web.json(wallet, 202, {"Retry-After": "1"})
    return web.json(Wallet(owner_id=wanted.owner_id, balances=[_balance(wanted.currency, found[spec])]), 201)


async def get_wallet(request: Request) -> Response:
    owner_id: str = web.inputs(request).params["owner_id"]
    require_owner(await web.caller(request), owner_id)
    return web.json(await wallet_of(request, owner_id))


async def wallet_of(request: Request, owner_id: str) -> Wallet:
    """A user's balances per currency, from the ledger (404 `wallet_not_found` without a wallet)."""
    d = web.deps(request)
    async with d.pool.acquire() as conn:
        rows = await conn.fetch(q.SELECT_WALLET_ACCOUNTS, "user", owner_id, int(chart.Code.USER_WALLET))
    if not rows:
        raise ProblemError(404, "wallet_not_found", f"{owner_id} has no wallet")
    ids = [row["account_id"].int for row in rows]
    by_id = {a.id: a for a in await d.ledger.lookup_accounts(ids)}
    balances = [
        _balance(row["currency"], by_id[row["account_id"].int])
        for row in rows
        if row["account_id"].int in by_id
    ]
    return Wallet(owner_id=owner_id, balances=balances)


async def history(request: Request) -> Response:
    owner_id: str = web.inputs(request).params["owner_id"]
    require_owner(await web.caller(request), owner_id)
    return web.json(await history_of(request, owner_id))


async def history_of(request: Request, owner_id: str) -> HistoryPage:
    """A page of a user's settled movements, newest first (the `limit` and `cursor` parameters)."""
    d = web.deps(request)
    given = web.inputs(request)
    count: int = given.params["limit"]
    after_at, after_id = (
        cursors.decode_bigint(given.params["cursor"]) if given.params["cursor"] else (None, None)
    )
    async with d.pool.acquire() as conn:
        rows = await conn.fetch(q.LIST_HISTORY, "user", owner_id, after_at, after_id, count + 1)
    items = [
        HistoryEntry(
            intent_id=str(r["intent_id"]),
            type=r["type"],
            direction=r["direction"],
            amount=r["amount"],
            currency=r["currency"],
            fee=r["fee"],
            counterparty_name=r["counterparty_name"],
            comment=r["comment"],
            requires_monitoring=r["requires_monitoring"],
            at=r["at"],
            original_intent_id=str(r["original_intent_id"]) if r["original_intent_id"] else None,
        )
        for r in rows[:count]
    ]
    cursor = None
    if len(rows) > count:
        last = rows[count - 1]
        cursor = cursors.encode(last["at"], last["id"])
    return HistoryPage(items=items, next_cursor=cursor)
