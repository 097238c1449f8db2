"""`pm demo`'s exchanges on the wire (docs/fx.md; the plan is `pm_tools.demo.fx_plan`): the rate set
with the admin key, each exchange a quote (`POST /v1/fx/quotes`) and the FX_EXCHANGE that carries it
out, followed to its end; then the refusals the demo expects:

- a quote already used, sent again under another Idempotency-Key: 409 `quote_used` (the intent's id is
  the quote's, so a quote makes one exchange at most);
- an exchange that buys 100.00 USD more than the USD liquidity account holds, read from the ledger just
  before (so it is left out without the ledger check): its user is funded for exactly what it sells, so
  only the liquidity can refuse it, and it fails LIQUIDITY_INSUFFICIENT with nothing moved on either
  ledger.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import cast

import httpx

from pm_client import api, fx_api
from pm_client.client import PMClient, PMError
from pm_tools.demo.errors import DemoError
from pm_tools.demo.fx_plan import FOREIGN, HOME, NO_LIQUIDITY_MARGIN
from pm_tools.demo.ledger_check import LedgerReader, liquidity_account
from pm_tools.demo.plan import REFUSED, Planned, User
from pm_tools.demo.summary import Outcome

Follow = Callable[[PMClient, str, Outcome], Awaitable[None]]
"""Waits for an intent to be terminal and notes it on the outcome (`Demo.follow`)."""


def _code(exc: PMError) -> str | None:
    return exc.problem.code if exc.problem is not None else None


@dataclass
class Exchanges:
    """The run's exchanges, sent with the admin key (`client`)."""

    client: PMClient
    follow: Follow
    send: Callable[[Outcome], Awaitable[None]]
    """Sends any other planned intent and follows it (`Demo.send`): the refused exchange's funding."""
    notes: list[str] = field(default_factory=list)

    async def set_rate(self, rate: fx_api.SetRate) -> fx_api.Rate:
        try:
            return await self.client.set_fx_rate(rate)
        except PMError as exc:
            raise DemoError(f"the gateway answered {exc} to setting the {rate.pair} rate", 2) from exc
        except httpx.TransportError as exc:
            raise DemoError(f"lost the gateway setting the {rate.pair} rate: {exc}") from exc

    async def _quote(self, outcome: Outcome) -> fx_api.Quote | None:
        """A quote selling the planned amount (None: refused, said on `outcome`)."""
        p = outcome.planned
        assert isinstance(p.payer, User), "a user exchanges"
        sold, bought = p.money(HOME)
        asked = fx_api.CreateQuote(
            owner_id=p.payer.id,
            sell=fx_api.QuoteSide(currency=cast(api.Currency, sold), amount=p.amount),
            buy=fx_api.QuoteSide(currency=cast(api.Currency, bought)),
        )
        try:
            return await self.client.create_fx_quote(asked)
        except PMError as exc:
            outcome.error = f"{exc} (asking a quote)"
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc} (asking a quote)"
        return None

    async def exchange(self, outcome: Outcome) -> None:
        """Quote (unless `outcome` carries its quote already), exchange, and follow the intent; a
        refusal the scenario expects is noted as such."""
        p = outcome.planned
        assert isinstance(p.payer, User), "a user exchanges"
        quote = outcome.quote or await self._quote(outcome)
        if quote is None:
            return
        outcome.quote = quote
        user = api.UserParty(id=p.payer.id)
        body = api.CreateIntent(
            type="FX_EXCHANGE",
            amount=quote.sell.amount,
            currency=quote.sell.currency,
            from_=user,
            to=user,
            from_name=p.payer.name,
            to_name=p.payer.name,
            comment=p.comment or None,
            metadata={"demo": "pm demo"},
            quote_id=quote.quote_id,
        )
        try:
            created = await self.client.create_intent(body, idempotency_key=p.key)
        except PMError as exc:
            if p.expected == (REFUSED, _code(exc)):
                outcome.refused = _code(exc)
            else:
                outcome.error = str(exc)
            return
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        if p.expected[0] == REFUSED:
            outcome.error = f"accepted as {created.id} ({created.status}), not refused {p.expected[1]}"
            return
        await self.follow(self.client, created.id, outcome)

    async def afterwards(
        self, outcomes: Sequence[Outcome], reader: LedgerReader | None, users: Sequence[User], run_id: str
    ) -> list[Outcome]:
        """The refusals, once the run's exchanges are done: a settled exchange's quote used again, and
        one exchange the USD liquidity cannot cover (with the ledger read)."""
        done = [o for o in outcomes if o.planned.type == "FX_EXCHANGE" and o.quote and o.state == "SETTLED"]
        out: list[Outcome] = []
        if done:
            used = done[0].planned
            again = Outcome(
                replace(used, key=f"{used.key}:again", scenario="quote-reused"), quote=done[0].quote
            )
            await self.exchange(again)
            out.append(again)
        else:
            self.notes.append("no quote used twice: no exchange settled")
        if reader is None:
            self.notes.append(
                "no exchange beyond the USD liquidity: it is sized from the ledger, which was not read"
            )
        else:
            out += await self.beyond_liquidity(reader, users[0], run_id)
        return out

    async def beyond_liquidity(self, reader: LedgerReader, user: User, run_id: str) -> list[Outcome]:
        """An exchange buying more USD than the liquidity holds, its user funded for exactly what it
        sells: the funding settles, the exchange fails LIQUIDITY_INSUFFICIENT."""
        posted, held = await reader.balance(liquidity_account(FOREIGN))
        wanted = max(0, (posted or 0) - (held or 0)) + NO_LIQUIDITY_MARGIN
        asked = fx_api.CreateQuote(
            owner_id=user.id,
            sell=fx_api.QuoteSide(currency=HOME),
            buy=fx_api.QuoteSide(currency=FOREIGN, amount=wanted),
        )
        dry = Planned(
            f"{run_id}:fx:beyond-liquidity",
            "no-liquidity",
            "FX_EXCHANGE",
            0,
            user,
            user,
            "all in",
            buys=FOREIGN,
        )
        try:
            quote = await self.client.create_fx_quote(asked)
        except PMError as exc:
            if _code(exc) == "amount_too_large":
                self.notes.append(
                    f"no exchange beyond the USD liquidity: it holds more than one exchange buys ({exc})"
                )
                return []
            return [Outcome(dry, error=f"{exc} (asking a quote for {wanted} {FOREIGN})")]
        except httpx.TransportError as exc:
            return [Outcome(dry, error=f"{type(exc).__name__}: {exc} (asking a quote)")]
        funding = Planned(
            f"{run_id}:fund-beyond-liquidity:{user.id}",
            "no-liquidity-funding",
            "ADJUSTMENT",
            quote.sell.amount,
            None,
            user,
            "pm demo: baht for a large exchange",
        )
        funded, attempt = Outcome(funding), Outcome(replace(dry, amount=quote.sell.amount), quote=quote)
        await self.send(funded)
        if funded.state == "SETTLED":
            await self.exchange(attempt)
        else:
            attempt.error = "not sent: its funding did not settle"
        return [funded, attempt]
