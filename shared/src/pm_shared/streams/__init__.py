"""The Redis Streams runtime every hand-off uses (DESIGN §4): names, provisioning, publishing, consuming."""

from pm_shared.streams.connection import connect
from pm_shared.streams.consumer import BatchHandler, Consumer, Delivery, MessageHandler
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
