"""Opening ledger accounts outside an intent (a wallet, a merchant's accounts), as every ledger write
is made: by the ledger-writer. One command carries the accounts that are missing (their ids are
deterministic, so a repeat is harmless); then the ledger is polled for up to `wait_s`, and those that
appeared are recorded in `pm.tb_account_map`. Those still missing are on their way: a repeat of the
same call finds them. Used by the gateway (`POST /v1/wallets`, merchant onboarding) and `pm merchants`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import tigerbeetle as tb

from pm_shared import messages
from pm_shared.db import Pool
from pm_shared.ledger import accounts, chart
from pm_shared.ledger.api import Ledger
from pm_shared.streams import Publisher
from pm_shared.streams.names import LEDGER_COMMANDS

POLL_S = 0.05
OPEN_STEP = "open_wallet"
"""The step of an account-opening command; the orchestrator acknowledges its result and does nothing."""

Opened = dict[chart.AccountSpec, tb.Account]


async def existing(ledger: Ledger, specs: Sequence[chart.AccountSpec]) -> Opened:
    """The accounts of `specs` the ledger has now."""
    wanted = {spec: accounts.spec_account(spec) for spec in specs}
    by_id = {a.id: a for a in await ledger.lookup_accounts([a.id for a in wanted.values()])}
    return {spec: by_id[a.id] for spec, a in wanted.items() if a.id in by_id}


async def open_accounts(
    ledger: Ledger, publisher: Publisher, pool: Pool, specs: Sequence[chart.AccountSpec], *, wait_s: float
) -> Opened:
    """The accounts of `specs` that exist once the ledger-writer was asked for the others and up to
    `wait_s` passed. BackPressureError (or StreamMissingError) when the command cannot be sent."""
    found = await existing(ledger, specs)
    missing = [spec for spec in specs if spec not in found]
    if missing:
        await publisher.publish(LEDGER_COMMANDS, _command(missing))
        deadline = time.monotonic() + wait_s
        while len(found) < len(specs) and time.monotonic() < deadline:
            await asyncio.sleep(POLL_S)
            found = await existing(ledger, specs)
    if found:
        async with pool.acquire() as conn:
            await accounts.record_opened(conn, list(found))
    return found


def _command(missing: Sequence[chart.AccountSpec]) -> messages.LedgerCommand:
    opened = [accounts.spec_account(spec) for spec in missing]
    first = opened[0].id
    return messages.LedgerCommand(
        intent_id=f"accounts:{first:032x}",
        message_id=f"open-accounts:{first:032x}:{len(opened)}",
        produced_at=messages.now(),
        step=OPEN_STEP,
        accounts=[
            messages.LedgerAccount(id=a.id, ledger=a.ledger, code=a.code, flags=int(a.flags)) for a in opened
        ],
    )
