"""Currency exchange end to end (gateway, orchestrator, ledger-writer as processes, on a database of
this module's own): an admin sets a rate and funds the liquidity accounts; a user's FX_EXCHANGE moves
the principal into THB liquidity, the spread to fee revenue and USD out of liquidity into the user's
USD wallet, as one linked chain over two ledgers; an exchange the USD liquidity cannot cover fails
LIQUIDITY_INSUFFICIENT with nothing held or moved on either ledger; every ledger sums to zero."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import tigerbeetle as tb

from pm_client import PMClient, PMError, fx_api
from pm_client import api as http_api
from pm_shared.ledger import chart, ids, open_ledger
from pm_tools.testing.saga import SagaFleet, accounts, module_saga, posted, run_intent, transfers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    with module_saga(Path(tmp_path_factory.mktemp("fx"))) as running:
        yield running


def wallet(owner: str, currency: str) -> int:
    return ids.account_id("user", owner, chart.ledger_of(currency), int(chart.Code.USER_WALLET))


def operator(code: chart.Code, currency: str) -> int:
    return ids.account_id("operator", code.name.lower(), chart.ledger_of(currency), int(code))


async def open_wallet(pm: PMClient, owner: str, currency: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await pm.open_wallet(owner, currency)
            return
        except PMError as exc:
            if exc.status != 202 or time.monotonic() > deadline:
                raise


async def adjust(pm: PMClient, to: http_api.Party, amount: int, currency: http_api.Currency) -> None:
    made = await run_intent(
        pm,
        http_api.CreateIntent(
            type="ADJUSTMENT", amount=amount, currency=currency, from_=http_api.OperatorParty(), to=to
        ),
    )
    assert (made.status, made.failure_code) == ("SETTLED", None), made


async def exchange(pm: PMClient, owner: str, quote: fx_api.Quote) -> http_api.Intent:
    user = http_api.UserParty(id=owner)
    body = http_api.CreateIntent(
        type="FX_EXCHANGE",
        amount=quote.sell.amount,
        currency=quote.sell.currency,
        from_=user,
        to=user,
        quote_id=quote.quote_id,
    )
    return await run_intent(pm, body)


async def ledger_totals(database_url: str) -> dict[int, int]:
    """Per ledger, credits minus debits (posted and pending) over every account: zero when balanced."""
    ledger = await open_ledger("embedded+" + database_url, readonly=True)
    try:
        totals: dict[int, int] = {}
        for number in chart.LEDGERS.values():
            every = tb.QueryFilter(
                user_data_128=0, user_data_64=0, user_data_32=0, ledger=number, code=0,
                timestamp_min=0, timestamp_max=0, limit=8000, flags=tb.QueryFilterFlags.NONE,
            )  # fmt: skip
            found = await ledger.query_accounts(every)
            totals[number] = sum(
                a.credits_posted - a.debits_posted + a.credits_pending - a.debits_pending for a in found
            )
        return totals
    finally:
        await ledger.close()


async def test_an_exchange_moves_money_on_two_ledgers_and_liquidity_bounds_it(saga: SagaFleet) -> None:
    owner = f"u-{uuid.uuid4().hex[:8]}"
    thb_liquidity, usd_liquidity = (operator(chart.Code.FX_LIQUIDITY, c) for c in ("THB", "USD"))
    revenue = operator(chart.Code.FEE_REVENUE, "THB")
    async with saga.client(saga.admin) as pm:
        await pm.set_fx_rate(fx_api.SetRate(pair="USD/THB", rate="35.8125", spread_bps=50))
        for currency in ("THB", "USD"):
            await open_wallet(pm, owner, currency)
        await adjust(pm, http_api.UserParty(id=owner), 1_000_000, "THB")
        await adjust(pm, http_api.LiquidityParty(), 5_000, "USD")  # 50.00 USD of liquidity
        before = await accounts(saga.database_url, [thb_liquidity, usd_liquidity, revenue])
        quote = await pm.create_fx_quote(
            fx_api.CreateQuote(
                owner_id=owner,
                sell=fx_api.QuoteSide(currency="THB", amount=100_000),
                buy=fx_api.QuoteSide(currency="USD"),
            )
        )
        done = await exchange(pm, owner, quote)
        assert (done.status, done.failure_code, done.id) == ("SETTLED", None, str(quote.quote_id)), done
        assert [leg.name for leg in done.legs] == ["principal", "spread", "buy"]
        found = await accounts(
            saga.database_url,
            [wallet(owner, "THB"), wallet(owner, "USD"), thb_liquidity, usd_liquidity, revenue],
        )
        assert posted(found[wallet(owner, "THB")]) == 1_000_000 - 100_000
        assert posted(found[wallet(owner, "USD")]) == quote.buy.amount == 2_778  # ⌊99,502 / 35.8125⌋
        assert posted(found[thb_liquidity]) - posted(before[thb_liquidity]) == quote.principal
        assert posted(found[revenue]) - posted(before[revenue]) == quote.fee
        assert posted(before[usd_liquidity]) - posted(found[usd_liquidity]) == quote.buy.amount
        history = await pm.wallet_history(owner)
        moves = [(h.direction, h.amount, h.currency, h.fee) for h in history.items if h.type == "FX_EXCHANGE"]
        assert sorted(moves) == [("in", 2_778, "USD", 0), ("out", quote.principal, "THB", quote.fee)]

        # 50.00 USD of liquidity, 27.78 gone: buying 30.00 more cannot be covered.
        too_much = await pm.create_fx_quote(
            fx_api.CreateQuote(
                owner_id=owner,
                sell=fx_api.QuoteSide(currency="THB"),
                buy=fx_api.QuoteSide(currency="USD", amount=3_000),
            )
        )
        refused = await exchange(pm, owner, too_much)
        assert (refused.status, refused.failure_code) == ("FAILED", "LIQUIDITY_INSUFFICIENT"), refused
    after = await accounts(saga.database_url, [wallet(owner, "THB"), wallet(owner, "USD"), usd_liquidity])
    assert posted(after[wallet(owner, "THB")]) == 900_000 and posted(after[wallet(owner, "USD")]) == 2_778
    assert all(a.debits_pending == 0 and a.credits_pending == 0 for a in after.values())
    assert set((await ledger_totals(saga.database_url)).values()) == {0}


async def test_liquidity_running_out_mid_run_fails_exchanges_whole(saga: SagaFleet) -> None:
    """Twelve exchanges at once, the USD liquidity enough for about half: each one either moved on
    both ledgers or on neither (no leg posted on one without the other), and nothing stays held."""
    owners = [f"u-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    async with saga.client(saga.admin) as pm:
        await pm.set_fx_rate(fx_api.SetRate(pair="USD/THB", rate="35", spread_bps=0))
        for owner in owners:
            for currency in ("THB", "USD"):
                await open_wallet(pm, owner, currency)
            await adjust(pm, http_api.UserParty(id=owner), 100_000, "THB")
        usd_liquidity = operator(chart.Code.FX_LIQUIDITY, "USD")
        left = posted((await accounts(saga.database_url, [usd_liquidity]))[usd_liquidity])
        # What is left of the earlier test's funding, topped up to cover 6 exchanges of 20.00 USD.
        await adjust(pm, http_api.LiquidityParty(), 6 * 2_000 - left + 1_000, "USD")
        quotes = [
            await pm.create_fx_quote(
                fx_api.CreateQuote(
                    owner_id=owner,
                    sell=fx_api.QuoteSide(currency="THB"),
                    buy=fx_api.QuoteSide(currency="USD", amount=2_000),
                )
            )
            for owner in owners
        ]
        done = await asyncio.gather(*(exchange(pm, q.owner_id, q) for q in quotes))
    outcomes = sorted((d.status, d.failure_code) for d in done)
    assert outcomes == [("FAILED", "LIQUIDITY_INSUFFICIENT")] * 6 + [("SETTLED", None)] * 6, outcomes
    legs = [
        ids.transfer_id(d.id, leg + suffix)
        for d in done
        for leg in ("principal", "buy")
        for suffix in ("", ":post")
    ]
    made = await transfers(saga.database_url, legs)
    for d in done:
        posted_legs = {leg for leg in ("principal", "buy") if ids.transfer_id(d.id, leg + ":post") in made}
        assert posted_legs == ({"principal", "buy"} if d.status == "SETTLED" else set()), d
    wallets = await accounts(saga.database_url, [wallet(o, c) for o in owners for c in ("THB", "USD")])
    assert all(a.debits_pending == 0 for a in wallets.values())
    assert sum(posted(wallets[wallet(o, "USD")]) for o in owners) == 6 * 2_000
    assert posted((await accounts(saga.database_url, [usd_liquidity]))[usd_liquidity]) == 1_000
    assert set((await ledger_totals(saga.database_url)).values()) == {0}
