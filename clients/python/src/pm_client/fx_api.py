"""The HTTP contract of currency exchange (docs/fx.md): rates an admin sets, quotes a client asks for
(an FX_EXCHANGE intent then carries one out: `pm_client.api.CreateIntent` with `quoteId`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import msgspec

from pm_client.api import LINE_PATTERN, Amount, AwareDatetime, Currency, Out, OwnerId, Struct

PAIR_PATTERN = r"^(USD/THB|THB/USD|USD/RUB|RUB/USD|THB/RUB|RUB/THB)(?!\n)$"
RATE_PATTERN = r"^(?!0(\.0{1,12})?$)(0|[1-9][0-9]{0,8})(\.[0-9]{1,12})?(?!\n)$"
"""A decimal above zero written out: at most 9 integer digits and 12 decimals, no sign, no exponent."""

Pair = Annotated[str, msgspec.Meta(pattern=PAIR_PATTERN, description="BASE/QUOTE, e.g. USD/THB.")]
RateText = Annotated[
    str,
    msgspec.Meta(
        pattern=RATE_PATTERN,
        description="QUOTE per one BASE as an exact decimal string (`35.8125`), never a JSON number.",
    ),
]
SpreadBps = Annotated[int, msgspec.Meta(ge=0, le=2_000, description="The spread in basis points (≤ 20 %).")]


class SetRate(Struct, kw_only=True):
    """`POST /v1/admin/fx/rates`: a new rate for a pair (every earlier one is kept)."""

    pair: Pair
    rate: RateText
    spread_bps: SpreadBps
    source: Annotated[str, msgspec.Meta(max_length=100, pattern=LINE_PATTERN)] = ""
    valid_from: AwareDatetime | None = None
    """When it starts to apply (now when left out); a quote uses the newest rate already valid."""


class Rate(Out, kw_only=True):
    id: int
    pair: str
    rate: str
    spread_bps: int
    source: str
    valid_from: datetime
    created_by: str
    created_at: datetime


class QuoteSide(Struct, kw_only=True):
    currency: Currency
    amount: Amount | None = None


class CreateQuote(Struct, kw_only=True):
    """`POST /v1/fx/quotes`: price selling one currency for another, for `ownerId`; exactly one of
    `sell.amount` (what leaves the wallet, spread included) and `buy.amount` (what arrives)."""

    owner_id: OwnerId
    sell: QuoteSide
    buy: QuoteSide

    def __post_init__(self) -> None:
        if self.sell.currency == self.buy.currency:
            raise ValueError("sell and buy name two different currencies")
        if (self.sell.amount is None) == (self.buy.amount is None):
            raise ValueError("exactly one of sell.amount and buy.amount")


class Amounts(Out, kw_only=True):
    currency: Currency
    amount: int


class Quote(Out, kw_only=True):
    """A price locked until `expiresAt`, for one FX_EXCHANGE by its owner: `sell.amount` leaves the
    wallet (`fee` of it is the spread), `buy.amount` arrives."""

    quote_id: uuid.UUID
    owner_id: str
    sell: Amounts
    buy: Amounts
    principal: int
    fee: int
    pair: str
    rate: str
    spread_bps: int
    rate_id: int
    created_at: datetime
    expires_at: datetime
