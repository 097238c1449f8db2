"""Accounts a request opens (a wallet, a merchant's), through `pm_shared.ledger.opening`, with the
gateway's connections and wait (`PM_GATEWAY_WALLET_OPEN_WAIT_S`); a busy ledger is 503 `backpressure`."""

from __future__ import annotations

from collections.abc import Sequence

from pm_gateway.deps import Deps
from pm_gateway.problems import ProblemError
from pm_shared.ledger import chart
from pm_shared.ledger import opening as ledger_opening
from pm_shared.streams import BackPressureError


async def open_accounts(d: Deps, specs: Sequence[chart.AccountSpec]) -> ledger_opening.Opened:
    try:
        return await ledger_opening.open_accounts(
            d.ledger, d.publisher, d.pool, specs, wait_s=d.settings.wallet_open_wait_s
        )
    except BackPressureError as exc:
        retry = str(max(1, round(exc.retry_after_s)))
        raise ProblemError(
            503, "backpressure", "the ledger is busy; retry later", headers={"Retry-After": retry}
        ) from None


async def existing(d: Deps, specs: Sequence[chart.AccountSpec]) -> ledger_opening.Opened:
    return await ledger_opening.existing(d.ledger, specs)
