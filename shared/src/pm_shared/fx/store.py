"""Rates and quotes as stored (docs/fx.md): `set_rate` keeps every rate; `quote` prices an exchange at
the rate in force (refusing one older than the allowed age) and locks the price until it expires.
The gateway's FX routes and `pm fx` use them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

import asyncpg

from pm_shared.db import Conn
from pm_shared.fx import queries
from pm_shared.fx.pricing import Pair, Price, PricingError, Rate, buying, selling


@dataclass(frozen=True)
class StoredRate:
    id: int
    rate: Rate
    source: str
    valid_from: datetime
    created_by: str
    created_at: datetime


def _rate(row: asyncpg.Record) -> StoredRate:
    return StoredRate(
        id=row["id"],
        rate=Rate(Pair.parse(row["pair"]), Decimal(row["rate"]), row["spread_bps"]),
        source=row["source"],
        valid_from=row["valid_from"],
        created_by=row["created_by"],
        created_at=row["created_at"],
    )


async def set_rate(
    conn: Conn, rate: Rate, *, source: str, valid_from: datetime | None, created_by: str
) -> StoredRate:
    row = await conn.fetchrow(
        queries.INSERT_RATE, str(rate.pair), str(rate.rate), rate.spread_bps, source, valid_from, created_by
    )
    assert row is not None
    return _rate(row)


async def rates(conn: Conn, pair: Pair | None = None, *, limit: int = 100) -> list[StoredRate]:
    rows = await conn.fetch(queries.LIST_RATES, None if pair is None else str(pair), limit)
    return [_rate(r) for r in rows]


@dataclass(frozen=True)
class Quote:
    id: uuid.UUID
    owner_id: str
    key_id: str
    rate_id: int
    price: Price
    pair: str
    rate: str
    spread_bps: int
    created_at: datetime
    expires_at: datetime
    expired: bool
    used: bool
    """An intent carries it out already (an FX_EXCHANGE's or a top-up's id is its quote's)."""


def _quote(row: asyncpg.Record) -> Quote:
    return Quote(
        id=row["id"],
        owner_id=row["owner_id"],
        key_id=row["key_id"],
        rate_id=row["rate_id"],
        price=Price(
            sell=row["sell_currency"],
            buy=row["buy_currency"],
            sell_amount=row["sell_amount"],
            principal=row["principal"],
            fee=row["fee"],
            buy_amount=row["buy_amount"],
        ),
        pair=row["pair"],
        rate=row["rate"],
        spread_bps=row["spread_bps"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        expired=row["expired"],
        used=row["used"],
    )


@dataclass(frozen=True)
class Asked:
    """A quote asked for: who, which way, and exactly one of the two amounts."""

    owner_id: str
    key_id: str
    sell: str
    buy: str
    sell_amount: int | None
    buy_amount: int | None


async def quote(
    conn: Conn, quote_id: uuid.UUID, asked: Asked, *, max_age_s: float, ttl_s: float, amount_max: int
) -> Quote:
    """Price `asked` at the rate in force and store the quote. PricingError (`unknown_pair` when no
    rate is set for the pair, `rate_stale` when the newest is older than `max_age_s`,
    `amount_too_small`/`amount_too_large`) when it cannot be priced; nothing is stored then."""
    pairs = [str(p) for p in Pair.of(asked.sell, asked.buy)]
    row = await conn.fetchrow(queries.CURRENT_RATE, pairs)
    if row is None:
        raise PricingError("unknown_pair", f"no rate is set for {asked.sell}/{asked.buy}")
    current = _rate(row)
    age: timedelta = row["age"]
    if age.total_seconds() > max_age_s:
        old = int(age.total_seconds())
        raise PricingError(
            "rate_stale", f"the newest {current.rate.pair} rate is {old} s old (at most {max_age_s:g} s)"
        )
    if asked.sell_amount is not None:
        price = selling(current.rate, asked.sell, asked.buy, asked.sell_amount, amount_max=amount_max)
    else:
        assert asked.buy_amount is not None
        price = buying(current.rate, asked.sell, asked.buy, asked.buy_amount, amount_max=amount_max)
    stored = await conn.fetchrow(
        queries.INSERT_QUOTE,
        quote_id,
        asked.owner_id,
        asked.key_id,
        current.id,
        price.sell,
        price.buy,
        price.sell_amount,
        price.principal,
        price.fee,
        price.buy_amount,
        ttl_s,
    )
    assert stored is not None
    return _quote(stored)


async def get_quote(conn: Conn, quote_id: uuid.UUID) -> Quote | None:
    row = await conn.fetchrow(queries.SELECT_QUOTE, quote_id)
    return None if row is None else _quote(row)
