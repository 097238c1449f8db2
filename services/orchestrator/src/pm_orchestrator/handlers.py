"""What the orchestrator reads: intents, ledger results and PSP results drive the saga (`saga`), a
batch at a time."""

from __future__ import annotations

import msgspec

from pm_orchestrator.saga import Saga
from pm_shared.messages import IntentSubmitted, LedgerResult, PspResult
from pm_shared.runtime import Subscription
from pm_shared.streams.names import INTENTS, LEDGER_RESULTS, PSP_RESULTS


def subscriptions(saga: Saga) -> list[Subscription]:
    return [
        Subscription(INTENTS.name, msgspec.json.Decoder(IntentSubmitted), handle_batch=saga.on_intents),
        Subscription(LEDGER_RESULTS.name, msgspec.json.Decoder(LedgerResult), handle_batch=saga.on_results),
        Subscription(PSP_RESULTS.name, msgspec.json.Decoder(PspResult), handle_batch=saga.on_psp_results),
    ]
