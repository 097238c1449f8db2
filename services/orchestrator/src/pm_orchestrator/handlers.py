"""What the orchestrator reads: intents and ledger results drive the saga (`saga`), a batch at a time.

PSP results have no saga yet (the PSP routes fail at intake with ROUTE_UNAVAILABLE, so none are
expected): such a message is dead-lettered intact with reason `unhandled`, for a replay by a build
that has the PSP steps.
"""

from __future__ import annotations

import logging

import msgspec

from pm_orchestrator.saga import Saga
from pm_shared.errors import NotImplementedYet
from pm_shared.messages import IntentSubmitted, LedgerResult
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import INTENTS, LEDGER_RESULTS, PSP_RESULTS

log = logging.getLogger(__name__)


async def on_psp_result(delivery: Delivery[msgspec.Raw]) -> None:
    log.info("PSP result %s received", delivery.entry_id)
    raise NotImplementedYet("the orchestrator cannot apply PSP results yet")


def subscriptions(saga: Saga) -> list[Subscription]:
    return [
        Subscription(INTENTS.name, msgspec.json.Decoder(IntentSubmitted), handle_batch=saga.on_intents),
        Subscription(LEDGER_RESULTS.name, msgspec.json.Decoder(LedgerResult), handle_batch=saga.on_results),
        Subscription(PSP_RESULTS.name, msgspec.json.Decoder(msgspec.Raw), handle=on_psp_result),
    ]
