"""Prometheus metrics of the streams runtime, labelled by stream key and consumer group."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

MESSAGES = Counter(
    "pm_stream_messages_total",
    "Stream entries by outcome (ack, retry, transient, dlq, deleted, stale_ack).",
    ["stream", "group", "outcome"],
)
HANDLER_SECONDS = Histogram(
    "pm_stream_handler_seconds",
    "Time a batch spent in its handler.",
    ["stream", "group"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
E2E_SECONDS = Histogram(
    "pm_stream_e2e_latency_seconds",
    "From XADD (the entry id's time) to the handler finishing.",
    ["stream", "group"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
BATCH_SIZE = Histogram(
    "pm_stream_batch_size",
    "Entries per batch read.",
    ["stream", "group"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500, 1000),
)
INFLIGHT = Gauge("pm_stream_inflight", "Entries being handled.", ["stream", "group"])
CLAIMED = Counter("pm_stream_claimed_total", "Entries reclaimed from idle consumers.", ["stream", "group"])
CLAIM_DELETED = Counter(
    "pm_stream_claim_deleted_total",
    "Pending entries whose payload was trimmed or deleted before they were acked (data loss).",
    ["stream", "group"],
)
DLQ = Counter("pm_stream_dlq_total", "Entries moved to the dead-letter queue.", ["stream", "group", "reason"])
BACKPRESSURE = Counter(
    "pm_stream_backpressure_rejections_total", "Publishes refused under back-pressure.", ["stream"]
)
PUBLISHED = Counter("pm_stream_published_total", "Entries added by this process.", ["stream"])
GROUP_LAG = Gauge(
    "pm_stream_group_lag",
    "Entries not yet delivered to the group (NaN when Redis cannot tell).",
    ["stream", "group"],
)
GROUP_PENDING = Gauge("pm_stream_group_pending", "Entries delivered and not yet acked.", ["stream", "group"])
GROUP_OUTSTANDING = Gauge(
    "pm_stream_group_outstanding", "Lag plus pending (NaN when lag is unknown).", ["stream", "group"]
)
OLDEST_PENDING_AGE = Gauge(
    "pm_stream_oldest_pending_age_seconds", "Age of the oldest unacked entry.", ["stream", "group"]
)
STREAM_LENGTH = Gauge("pm_stream_length", "Entries in the stream (XLEN).", ["stream"])
DLQ_LENGTH = Gauge("pm_stream_dlq_length", "Entries in the stream's dead-letter queue.", ["stream"])


class Labels:
    """The metric children of one stream key and group, resolved once rather than per message."""

    def __init__(self, key: str, group: str) -> None:
        self.ack = MESSAGES.labels(key, group, "ack")
        self.retry = MESSAGES.labels(key, group, "retry")
        self.transient = MESSAGES.labels(key, group, "transient")
        self.deleted = MESSAGES.labels(key, group, "deleted")
        self.stale_ack = MESSAGES.labels(key, group, "stale_ack")
        self.handler = HANDLER_SECONDS.labels(key, group)
        self.e2e = E2E_SECONDS.labels(key, group)
        self.batch = BATCH_SIZE.labels(key, group)
        self.inflight = INFLIGHT.labels(key, group)
        self.claimed = CLAIMED.labels(key, group)
        self.claim_deleted = CLAIM_DELETED.labels(key, group)
