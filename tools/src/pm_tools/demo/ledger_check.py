"""`pm demo`'s money check on the ledger itself, once its intents are terminal: per ledger the debits
equal the credits (posted, and pending), no user wallet, merchant account or FX liquidity account is
below zero, and the demo merchant's account and the liquidity accounts the run's exchanges used moved
by exactly what the run's settled intents say.

The gateway shows user wallets only, so this reads the ledger directly (TigerBeetle or the embedded
one, read-only): every account of every ledger PM keeps, page by page (`query_accounts`). It is
meant for a quiet moment: while other traffic flows, a ledger of more than one page is not read at
one instant, and its sums may disagree for that reason alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tigerbeetle as tb

from pm_shared import db
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_tools.database import UNMIGRATED, UNREACHABLE
from pm_tools.demo.errors import DemoError

# Accounts whose debits may never exceed their credits, and what the check calls them.
BOUNDED: dict[int, str] = {
    int(chart.Code.USER_WALLET): "wallet",
    int(chart.Code.MERCHANT): "merchant account",
    int(chart.Code.FX_LIQUIDITY): "liquidity account",
}


@dataclass(frozen=True)
class LedgerTotals:
    """The sums of one ledger's accounts."""

    currency: str
    ledger: int
    accounts: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int

    @property
    def balanced(self) -> bool:
        return self.debits_posted == self.credits_posted and self.debits_pending == self.credits_pending


@dataclass(frozen=True)
class BelowZero:
    """A wallet or merchant account whose debits (posted, or posted + pending) exceed its credits."""

    account_id: int
    what: str
    currency: str
    posted: int
    """credits posted - debits posted."""
    debits_pending: int


@dataclass(frozen=True)
class MerchantCheck:
    """The demo merchant's account in the run's currency: before the run, after it, and what the run's
    settled intents say it moved (funding + charges - commissions - credits)."""

    merchant_id: str
    currency: str
    account_id: int
    before: int | None
    """Posted balance before the run's first intent (None: no such account then)."""
    after: int | None
    pending: int | None
    moved: int

    @property
    def ok(self) -> bool:
        return self.after == (self.before or 0) + self.moved and self.pending == 0


@dataclass(frozen=True)
class LiquidityCheck:
    """The FX liquidity account of one currency: before the run's first funding of it, after the run,
    and what its settled intents say it moved (fundings + principal sold into it - bought out of it)."""

    currency: str
    account_id: int
    before: int | None
    after: int | None
    pending: int | None
    moved: int

    @property
    def ok(self) -> bool:
        return self.after == (self.before or 0) + self.moved and self.pending == 0


@dataclass
class LedgerCheck:
    """What the ledger says once the run is done; `problems` lists what does not add up."""

    where: str
    """The ledger read (its URL, without a password)."""
    totals: list[LedgerTotals] = field(default_factory=list)
    below_zero: list[BelowZero] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    """"wallet" / "merchant account" / "liquidity account" → how many were held to "not below zero"."""
    merchant: MerchantCheck | None = None
    liquidity: list[LiquidityCheck] = field(default_factory=list)
    """The liquidity accounts of a run with exchanges (read before and after it)."""

    @property
    def ok(self) -> bool:
        return not self.problems()

    def problems(self) -> list[str]:
        found = [
            f"ledger {t.currency} ({t.ledger}): debits posted {t.debits_posted} vs credits posted "
            f"{t.credits_posted}, debits pending {t.debits_pending} vs credits pending {t.credits_pending}"
            for t in self.totals
            if not t.balanced
        ]
        found += [
            f"{b.what} {b.account_id:#x} ({b.currency}) below zero: posted {b.posted}, "
            f"{b.debits_pending} more held"
            for b in self.below_zero
        ]
        m = self.merchant
        if m is not None and not m.ok:
            found.append(
                f"merchant account of {m.merchant_id} ({m.currency}): posted {m.after} pending {m.pending}, "
                f"expected posted {(m.before or 0) + m.moved} (before {m.before}, moved {m.moved}) pending 0"
            )
        found += [
            f"liquidity account ({c.currency}): posted {c.after} pending {c.pending}, expected posted "
            f"{(c.before or 0) + c.moved} (before {c.before}, moved {c.moved}) pending 0"
            for c in self.liquidity
            if not c.ok
        ]
        return found


def merchant_account(merchant_id: str, currency: str) -> int:
    return ids.account_id("merchant", merchant_id, chart.ledger_of(currency), int(chart.Code.MERCHANT))


def liquidity_account(currency: str) -> int:
    code = chart.Code.FX_LIQUIDITY
    return ids.account_id("operator", code.name.lower(), chart.ledger_of(currency), int(code))


async def _accounts(ledger: Ledger, ledger_id: int) -> list[tb.Account]:
    """Every account of one ledger, oldest first, a page (BATCH_MAX) at a time."""
    found: list[tb.Account] = []
    since = 0
    while True:
        page = await ledger.query_accounts(
            tb.QueryFilter(
                user_data_128=0,
                user_data_64=0,
                user_data_32=0,
                ledger=ledger_id,
                code=0,
                timestamp_min=since,
                timestamp_max=0,
                limit=BATCH_MAX,
                flags=tb.QueryFilterFlags(0),
            )
        )
        found += page
        if len(page) < BATCH_MAX:
            return found
        since = page[-1].timestamp + 1


class LedgerReader:
    """The ledger, read-only, for the demo's check; `open` it before the run (so a ledger it cannot
    reach stops the run before any traffic) and `close` it after."""

    def __init__(self, url: str, ledger: Ledger) -> None:
        self.where = db.redact_dsn(url)
        self.ledger = ledger

    @classmethod
    async def open(cls, url: str) -> LedgerReader:
        """DemoError (exit 2) when the ledger cannot be reached or has no schema."""
        try:
            ledger = await open_ledger(url, readonly=True)
            reader = cls(url, ledger)
            await ledger.lookup_accounts([1])  # a TigerBeetle client connects lazily: ask once
        except (*UNREACHABLE, *UNMIGRATED) as exc:
            raise DemoError(
                f"cannot read the ledger {db.redact_dsn(url)} for the money check ({type(exc).__name__}: "
                f"{exc}); give --ledger-url or --database-url, or --no-ledger-check",
                2,
            ) from exc
        return reader

    async def close(self) -> None:
        await self.ledger.close()

    async def balance(self, account_id: int) -> tuple[int | None, int | None]:
        """(posted, pending debits) of one account; (None, None) when there is no such account."""
        found = await self.ledger.lookup_accounts([account_id])
        if not found:
            return None, None
        return found[0].credits_posted - found[0].debits_posted, found[0].debits_pending

    async def check(self) -> LedgerCheck:
        """The sums of every ledger, and every wallet, merchant and liquidity account below zero."""
        out = LedgerCheck(self.where, checked=dict.fromkeys(BOUNDED.values(), 0))
        for currency, ledger_id in sorted(chart.LEDGERS.items()):
            accounts = await _accounts(self.ledger, ledger_id)
            out.totals.append(
                LedgerTotals(
                    currency,
                    ledger_id,
                    len(accounts),
                    sum(a.debits_posted for a in accounts),
                    sum(a.credits_posted for a in accounts),
                    sum(a.debits_pending for a in accounts),
                    sum(a.credits_pending for a in accounts),
                )
            )
            for a in accounts:
                what = BOUNDED.get(a.code)
                if what is None:
                    continue
                out.checked[what] += 1
                if a.debits_posted + a.debits_pending > a.credits_posted:
                    posted = a.credits_posted - a.debits_posted
                    out.below_zero.append(BelowZero(a.id, what, currency, posted, a.debits_pending))
        return out
