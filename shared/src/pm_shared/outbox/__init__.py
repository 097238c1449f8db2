"""Transactional outbox (see docs/architecture.md): enqueue with the state change, publish after commit,
relay the rest."""

from __future__ import annotations

from pm_shared.outbox.marks import Marks
from pm_shared.outbox.relay import Relay
from pm_shared.outbox.writer import Outgoing, enqueue, publish_committed

__all__ = ["Marks", "Outgoing", "Relay", "enqueue", "publish_committed"]
