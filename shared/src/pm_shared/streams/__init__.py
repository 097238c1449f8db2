"""The Redis Streams runtime every hand-off uses (see docs/streams.md): names, provisioning, publishing,
consuming."""

from __future__ import annotations

from pm_shared.streams.connection import connect
from pm_shared.streams.consumer import Consumer
from pm_shared.streams.delivery import BatchHandler, Delivery, MessageHandler
from pm_shared.streams.errors import BackPressureError, StreamMissingError
from pm_shared.streams.names import ALL_STREAMS, StreamSpec, dlq_key, partition_of, stream_key
from pm_shared.streams.provision import provision
from pm_shared.streams.publisher import Publisher

__all__ = [
    "ALL_STREAMS",
    "BackPressureError",
    "BatchHandler",
    "Consumer",
    "Delivery",
    "MessageHandler",
    "Publisher",
    "StreamMissingError",
    "StreamSpec",
    "connect",
    "dlq_key",
    "partition_of",
    "provision",
    "stream_key",
]
