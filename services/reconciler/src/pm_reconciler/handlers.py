"""What the reconciler does with each state change it reads.

The ledger ↔ PostgreSQL comparison and its alerts are not in this build; the reconciler only
records, in its log, every state change it observes on `pm:events` (terminal ones at INFO, the
steps in between at DEBUG: three log lines per payment would cost more than the payment). The
events are notifications (their facts live in PostgreSQL), so acknowledging them after logging
loses nothing.
"""

from __future__ import annotations

import logging

import msgspec

from pm_client.api import TERMINAL_STATES
from pm_shared.messages import IntentStateChanged
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import EVENTS

log = logging.getLogger(__name__)


async def on_state_changed(delivery: Delivery[IntentStateChanged]) -> None:
    event = delivery.message
    log.log(
        logging.INFO if event.state in TERMINAL_STATES else logging.DEBUG,
        "intent %s: %s -> %s%s",
        event.intent_id,
        event.previous,
        event.state,
        f" ({event.failure_code})" if event.failure_code else "",
    )


def subscriptions() -> list[Subscription]:
    return [Subscription(EVENTS.name, msgspec.json.Decoder(IntentStateChanged), handle=on_state_changed)]
