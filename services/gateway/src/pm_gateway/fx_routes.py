"""The routes of currency exchange (docs/fx.md): rates (admin) and quotes, declared as
`pm_gateway.routes` declares the others. An exchange itself is `POST /v1/intents` (FX_EXCHANGE)."""

from __future__ import annotations

import uuid

from pm_client.fx_api import CreateQuote, Pair, Quote, Rate, SetRate
from pm_gateway import fx
from pm_gateway.endpoints import Endpoint, Param

PRICING = ("unknown_pair", "rate_stale", "amount_too_small", "amount_too_large")
"""Why a quote cannot be given (422): no rate for the pair, the newest too old, an amount that buys
less than one minor unit, or more than one intent may move."""
QUOTE_RULES = ("quote_not_found", "quote_expired", "quote_mismatch")
"""Why an FX_EXCHANGE's quote cannot be used (422)."""

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        "POST",
        "/v1/admin/fx/rates",
        fx.set_rate,
        "Set a pair's rate (QUOTE per one BASE, an exact decimal string) and spread; every earlier rate "
        "is kept, and quotes use the newest already valid.",
        SetRate,
        {201: Rate},
        {403: ("forbidden_admin",)},
        tag="fx",
    ),
    Endpoint(
        "GET",
        "/v1/admin/fx/rates",
        fx.list_rates,
        "Every rate set, newest first (one pair's with `pair`).",
        None,
        {200: list[Rate]},
        {403: ("forbidden_admin",)},
        (Param("pair", "query", "Only this pair's rates, as BASE/QUOTE.", Pair),),
        tag="fx",
    ),
    Endpoint(
        "POST",
        "/v1/fx/quotes",
        fx.create_quote,
        "Price an exchange for an owner (exactly one of sell.amount and buy.amount), locked until "
        "`expiresAt` for one FX_EXCHANGE intent.",
        CreateQuote,
        {201: Quote},
        {403: ("forbidden_operation", "forbidden_owner"), 422: PRICING},
        tag="fx",
    ),
    Endpoint(
        "GET",
        "/v1/fx/quotes/{quote_id}",
        fx.show_quote,
        "A quote this key asked for (any, for an admin key).",
        None,
        {200: Quote},
        {404: ("quote_not_found",)},
        (
            Param(
                "quote_id",
                "path",
                "The quote id (a UUID); one that is not a UUID names no quote (404).",
                uuid.UUID,
                required=True,
                status=404,
                code="quote_not_found",
            ),
        ),
        tag="fx",
    ),
)
