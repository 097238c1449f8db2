"""What the orchestrator does with each message it reads.

The saga itself (states, routes, fees, limits, ledger legs) is not in this build: every message is
logged and dead-lettered intact with reason `unhandled`, so `pm dlq replay` can hand it to a build
that has the saga. Nothing is acknowledged as done that was not done. The one exception is the
result of a wallet opening (step `open_wallet`, sent by the gateway): there is nothing to do with it
(the gateway watches the ledger itself), so it is acknowledged rather than dead-lettered.
"""

from __future__ import annotations

import logging

import msgspec

from pm_shared.errors import NotImplementedYet
from pm_shared.messages import IntentSubmitted, LedgerResult
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import INTENTS, LEDGER_RESULTS, PSP_RESULTS

log = logging.getLogger(__name__)


async def on_intent(delivery: Delivery[IntentSubmitted]) -> None:
    intent = delivery.message
    log.info("intent %s (%s %d %s) received", intent.intent_id, intent.type, intent.amount, intent.currency)
    raise NotImplementedYet("the orchestrator cannot run the saga yet")


OPEN_WALLET_STEP = "open_wallet"


async def on_ledger_result(delivery: Delivery[LedgerResult]) -> None:
    result = delivery.message
    if result.step == OPEN_WALLET_STEP:
        log.info("wallet opening %s answered: ok=%s", result.command_id, result.ok)
        return
    log.info("ledger result %s (step %s) received", delivery.entry_id, result.step)
    raise NotImplementedYet("the orchestrator cannot apply ledger results yet")


async def on_psp_result(delivery: Delivery[msgspec.Raw]) -> None:
    log.info("PSP result %s received", delivery.entry_id)
    raise NotImplementedYet("the orchestrator cannot apply PSP results yet")


def subscriptions() -> list[Subscription]:
    return [
        Subscription(INTENTS.name, msgspec.json.Decoder(IntentSubmitted), handle=on_intent),
        Subscription(LEDGER_RESULTS.name, msgspec.json.Decoder(LedgerResult), handle=on_ledger_result),
        Subscription(PSP_RESULTS.name, msgspec.json.Decoder(msgspec.Raw), handle=on_psp_result),
    ]
