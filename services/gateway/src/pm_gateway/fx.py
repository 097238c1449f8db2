"""Currency exchange (docs/fx.md): rates (admin), quotes (a key that may exchange for the owner), and
the checks an FX_EXCHANGE intent's quote gets at intake (`quote_of`)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import cast

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import AMOUNT_MAX, CreateIntent, Currency, Exchange
from pm_client.fx_api import Amounts, CreateQuote, Quote, Rate, SetRate
from pm_gateway import web
from pm_gateway.auth import require_admin, require_operation, require_owner
from pm_gateway.ids import uuid7
from pm_gateway.problems import ProblemError
from pm_shared.fx import pricing, store

FX_EXCHANGE = "FX_EXCHANGE"


def rate_view(found: store.StoredRate) -> Rate:
    """A stored rate as the API shows it (and `pm fx rates list --json` prints it)."""
    return Rate(
        id=found.id,
        pair=str(found.rate.pair),
        rate=str(found.rate.rate),
        spread_bps=found.rate.spread_bps,
        source=found.source,
        valid_from=found.valid_from,
        created_by=found.created_by,
        created_at=found.created_at,
    )


def quote_view(found: store.Quote) -> Quote:
    price = found.price
    return Quote(
        quote_id=found.id,
        owner_id=found.owner_id,
        # A stored quote names only currencies PM keeps (its request was a `Currency` each way).
        sell=Amounts(currency=cast(Currency, price.sell), amount=price.sell_amount),
        buy=Amounts(currency=cast(Currency, price.buy), amount=price.buy_amount),
        principal=price.principal,
        fee=price.fee,
        pair=found.pair,
        rate=found.rate,
        spread_bps=found.spread_bps,
        rate_id=found.rate_id,
        created_at=found.created_at,
        expires_at=found.expires_at,
    )


async def set_rate(request: Request) -> Response:
    d = web.deps(request)
    wanted: SetRate = web.inputs(request).body
    caller = await web.caller(request)
    require_admin(caller)
    rate = pricing.Rate(pricing.Pair.parse(wanted.pair), Decimal(wanted.rate), wanted.spread_bps)
    async with d.pool.acquire() as conn:
        found = await store.set_rate(
            conn, rate, source=wanted.source, valid_from=wanted.valid_from, created_by=caller.key_id
        )
    return web.json(rate_view(found), 201)


async def list_rates(request: Request) -> Response:
    d = web.deps(request)
    pair: str | None = web.inputs(request).params["pair"]
    require_admin(await web.caller(request))
    async with d.pool.acquire() as conn:
        found = await store.rates(conn, None if pair is None else pricing.Pair.parse(pair))
    return web.json([rate_view(r) for r in found])


async def _priced(request: Request, asked: store.Asked) -> store.Quote:
    """`asked` priced and stored as a quote, with this gateway's limits; PricingError when it cannot be."""
    d = web.deps(request)
    config = d.settings
    async with d.pool.acquire() as conn:
        return await store.quote(
            conn,
            uuid7(),
            asked,
            max_age_s=config.fx_rate_max_age_s,
            ttl_s=config.fx_quote_ttl_s,
            amount_max=AMOUNT_MAX,
        )


def _exchange(found: store.Quote) -> Exchange:
    """What an intent carrying out `found` moves (stamped on it at intake)."""
    price = found.price
    return Exchange(
        quote_id=str(found.id),
        buy_currency=price.buy,
        buy_amount=price.buy_amount,
        principal=price.principal,
        spread=price.fee,
        rate=found.rate,
        pair=found.pair,
        spread_bps=found.spread_bps,
    )


def _refused(exc: pricing.PricingError) -> ProblemError:
    return ProblemError(422, exc.code, str(exc))


async def create_quote(request: Request) -> Response:
    wanted: CreateQuote = web.inputs(request).body
    caller = await web.caller(request)
    require_operation(caller, FX_EXCHANGE)
    require_owner(caller, wanted.owner_id)
    asked = store.Asked(
        owner_id=wanted.owner_id,
        key_id=caller.key_id,
        sell=wanted.sell.currency,
        buy=wanted.buy.currency,
        sell_amount=wanted.sell.amount,
        buy_amount=wanted.buy.amount,
    )
    try:
        found = await _priced(request, asked)
    except pricing.PricingError as exc:
        raise _refused(exc) from None
    return web.json(quote_view(found), 201, {"Location": f"/v1/fx/quotes/{found.id}"})


async def show_quote(request: Request) -> Response:
    d = web.deps(request)
    quote_id = web.inputs(request).params["quote_id"]
    caller = await web.caller(request)
    async with d.pool.acquire() as conn:
        found = await store.get_quote(conn, quote_id)
    if found is None or (found.key_id != caller.key_id and not caller.permissions.admin):
        raise ProblemError(404, "quote_not_found", "no such quote")
    return web.json(quote_view(found))


async def quote_of(request: Request, intent: CreateIntent) -> Exchange:
    """The exchange an FX_EXCHANGE intent carries out, from its quote: the quote must be the payer's,
    unexpired, and sell exactly the intent's amount and currency to the same user (422 otherwise)."""
    d = web.deps(request)
    assert intent.quote_id is not None
    async with d.pool.acquire() as conn:
        found = await store.get_quote(conn, intent.quote_id)
    payer = getattr(intent.from_, "id", None)
    if found is None or found.owner_id != payer:
        raise ProblemError(422, "quote_not_found", "no such quote for this owner")
    # A quote already used answers as its intent does (a replay finds it; another request is 409).
    if found.expired and not found.used:
        raise ProblemError(422, "quote_expired", f"the quote expired at {found.expires_at.isoformat()}")
    price = found.price
    if (intent.amount, intent.currency) != (price.sell_amount, price.sell):
        raise ProblemError(
            422,
            "quote_mismatch",
            f"the quote sells {price.sell_amount} {price.sell}, the intent {intent.amount} {intent.currency}",
        )
    return _exchange(found)


async def topup(
    request: Request, caller_key: str, intent: CreateIntent
) -> tuple[uuid.UUID, CreateIntent, Exchange]:
    """An SBP top-up into a wallet of another currency than roubles, priced now: the payer pays the
    roubles of a quote for exactly the asked amount (the QR carries them), exchanged into the wallet's
    currency when the payment arrives, at this price even if the quote has expired by then (the house
    carries that risk). Returns the intent's id (the quote's), the intent as it will be made (its
    amount and currency: the roubles collected) and its exchange. 422 when no rate can price it."""
    owner = getattr(intent.to, "id", None)
    assert owner is not None  # shapes.check: a top-up's payee is a user
    asked = store.Asked(
        owner_id=owner,
        key_id=caller_key,
        sell="RUB",
        buy=intent.currency,
        sell_amount=None,
        buy_amount=intent.amount,
    )
    try:
        found = await _priced(request, asked)
    except pricing.PricingError as exc:
        raise ProblemError(
            422, exc.code, f"an SBP top-up into {intent.currency} is exchanged from RUB: {exc}"
        ) from None
    collected = msgspec.structs.replace(intent, amount=found.price.sell_amount, currency="RUB")
    return found.id, collected, _exchange(found)
