"""How much FX liquidity the operator has left, per currency, for Prometheus (docs/fx.md): the active
writer reads the liquidity account (code 30) of every ledger every `fx_liquidity_interval_s` and sets
`pm_fx_liquidity_available`, beside the configured threshold `pm_fx_liquidity_low_threshold`; the
alert rule PMFxLiquidityLow fires while the first is below the second. An exchange buying a currency
whose liquidity cannot cover it fails LIQUIDITY_INSUFFICIENT, so the alert comes first."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

from prometheus_client import Gauge

from pm_shared.ledger import accounts, chart
from pm_shared.ledger.api import Ledger

log = logging.getLogger(__name__)

AVAILABLE = Gauge(
    "pm_fx_liquidity_available",
    "What the operator's FX liquidity account of a currency can still pay out (minor units: posted "
    "credits less posted and pending debits).",
    ["currency"],
)
THRESHOLD = Gauge(
    "pm_fx_liquidity_low_threshold",
    "Below this (minor units, PM_LEDGER_WRITER_FX_LIQUIDITY_LOW) a currency's FX liquidity is low.",
    ["currency"],
)


def parse_thresholds(text: str) -> dict[str, int]:
    """`THB:1000000,USD:30000` → {"THB": 1000000, "USD": 30000}; ValueError naming what is wrong."""
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        currency, sep, amount = part.partition(":")
        if not sep or currency not in chart.LEDGERS or not amount.isdigit():
            raise ValueError(
                f"{part!r} is not CURRENCY:MINOR_UNITS with a currency of {sorted(chart.LEDGERS)}"
            )
        out[currency] = int(amount)
    return out


def _liquidity(currency: str) -> int:
    spec = chart.AccountSpec(
        "operator", chart.Code.FX_LIQUIDITY.name.lower(), currency, chart.Code.FX_LIQUIDITY
    )
    return accounts.spec_account(spec).id


async def observe(ledger: Ledger, thresholds: Mapping[str, int]) -> None:
    """One reading of every ledger's liquidity account."""
    for currency, amount in thresholds.items():
        THRESHOLD.labels(currency).set(amount)
    wanted = {_liquidity(c): c for c in chart.LEDGERS}
    for account in await ledger.lookup_accounts(list(wanted)):
        available = account.credits_posted - account.debits_posted - account.debits_pending
        AVAILABLE.labels(wanted[account.id]).set(available)


async def watch(
    ledger: Ledger, thresholds: Mapping[str, int], interval_s: float, halt: asyncio.Event
) -> None:
    """`observe` every `interval_s` until `halt`; a failed reading is logged and the next one tried."""
    while not halt.is_set():
        try:
            await observe(ledger, thresholds)
        except Exception as exc:  # the gauges stay as they were; the writer goes on writing
            log.warning("FX liquidity not read: %r", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(halt.wait(), interval_s)
