"""What pm-ledger-writer does with each batch it reads: hand it to the `Writer` (see writer.py)."""

from __future__ import annotations

import msgspec

from pm_ledger_writer.writer import Writer
from pm_shared.messages import LedgerCommand
from pm_shared.runtime import Subscription
from pm_shared.streams.names import LEDGER_COMMANDS


def subscriptions(writer: Writer) -> list[Subscription]:
    # A message of another kind, or not a command at all, does not decode: the consumer dead-letters it.
    return [
        # The writer waits a ledger or Redis outage out itself while it holds the writer lease; what
        # it returns (lease lost, stopping) must reach the active writer, not be retried here.
        Subscription(
            LEDGER_COMMANDS.name,
            msgspec.json.Decoder(LedgerCommand),
            handle_batch=writer.handle_batch,
            waits_out_outages=True,
        )
    ]
