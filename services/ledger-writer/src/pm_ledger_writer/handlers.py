"""What pm-ledger-writer does with each message it reads.

Writing to the ledger is not in this build: every message is logged and dead-lettered intact with reason
`unhandled`, so `pm dlq replay` can hand it to a build that has it. Nothing is acknowledged as
done that was not done.
"""

from __future__ import annotations

import logging

import msgspec

from pm_shared.errors import NotImplementedYet
from pm_shared.runtime import Subscription
from pm_shared.streams import Delivery
from pm_shared.streams.names import LEDGER_COMMANDS

log = logging.getLogger(__name__)


async def on_message(delivery: Delivery[msgspec.Raw]) -> None:
    log.info("message %s received on %s", delivery.entry_id, delivery.key)
    raise NotImplementedYet("Writing to the ledger is not in this build")


def subscriptions() -> list[Subscription]:
    return [Subscription(LEDGER_COMMANDS.name, msgspec.json.Decoder(msgspec.Raw), handle=on_message)]
