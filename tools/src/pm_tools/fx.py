"""Exchange rates as `pm fx rates` manages them (docs/fx.md, "Rates"): the same store the gateway's
`POST /v1/admin/fx/rates` writes (`pm_shared.fx.store`), run from the command line on the database
directly. Every rate set here is recorded with the actor `pm fx (<user>)` as its `created_by`.

A rate is checked exactly as the API checks it (`pm_client.fx_api.SetRate`): one of the six pairs of
THB, USD and RUB; the rate an exact decimal string above zero with at most 9 integer digits and 12
decimals, never read through a float; the spread 0 to 2,000 basis points; `validFrom` with its offset.
"""

from __future__ import annotations

import getpass
import re
from datetime import datetime
from decimal import Decimal

import msgspec

from pm_client.fx_api import PAIR_PATTERN, SetRate
from pm_shared.fx import pricing, store
from pm_tools.database import connection

APPLICATION = "pm fx"
LIST_LIMIT_MAX = 1_000

# The API's field names in a validation error, as the command's arguments and options are called.
_FIELDS = {
    "pair": "PAIR",
    "rate": "RATE",
    "spreadBps": "--spread-bps",
    "source": "--source",
    "validFrom": "--valid-from",
}
_AT_FIELD = re.compile(r" - at `\$\.(\w+)`$")
# What a value refused by a pattern must look like, said plainly rather than as the regular expression.
_PATTERNS = {
    "pair": "one of " + ", ".join(re.findall(r"[A-Z]{3}/[A-Z]{3}", PAIR_PATTERN)),
    "rate": "an exact decimal above zero, at most 9 integer digits and 12 decimals, no sign or exponent "
    "(35.8125)",
}


def actor() -> str:
    return f"{APPLICATION} ({getpass.getuser()})"


def _named(error: msgspec.ValidationError) -> str:
    """msgspec's message with the field named as the command names it (`RATE: Expected …`)."""
    text = str(error)
    found = _AT_FIELD.search(text)
    if found is None:
        return text
    field = found.group(1)
    said = _PATTERNS[field] if field in _PATTERNS and "matching regex" in text else text[: found.start()]
    return f"{_FIELDS.get(field, field)}: {said}"


def rate_request(
    pair: str, rate: str, spread_bps: int, *, source: str = "", valid_from: str | None = None
) -> SetRate:
    """The rate as the API would take it; ValueError says what is wrong (naming the option).

    `rate` stays the string the operator wrote: the pattern refuses signs, exponents and more digits
    than `numeric` is asked to keep, so `Decimal(rate)` is exact."""
    body: dict[str, object] = {"pair": pair, "rate": rate, "spreadBps": spread_bps, "source": source}
    if valid_from is not None:
        body["validFrom"] = valid_from
    try:
        return msgspec.convert(body, SetRate)
    except msgspec.ValidationError as exc:
        raise ValueError(_named(exc)) from None


def pair_filter(pair: str) -> pricing.Pair:
    """A `--pair` as the API's list takes it; ValueError when it is no pair PM prices."""
    try:
        return pricing.Pair.parse(pair)
    except pricing.PricingError as exc:
        raise ValueError(f"--pair: {exc}") from None


async def set_rate(database_url: str, wanted: SetRate) -> store.StoredRate:
    """Keep `wanted` as the pair's newest rate (every earlier one stays)."""
    rate = pricing.Rate(pricing.Pair.parse(wanted.pair), Decimal(wanted.rate), wanted.spread_bps)
    valid_from: datetime | None = wanted.valid_from
    async with connection(database_url, APPLICATION) as conn:
        return await store.set_rate(
            conn, rate, source=wanted.source, valid_from=valid_from, created_by=actor()
        )


async def list_rates(
    database_url: str, pair: pricing.Pair | None = None, *, limit: int = 100
) -> list[store.StoredRate]:
    """Every rate set, newest first; with `pair`, that pair's as written (a USD/THB rate is not
    listed under THB/USD, though a quote finds either)."""
    async with connection(database_url, APPLICATION) as conn:
        return await store.rates(conn, pair, limit=limit)
