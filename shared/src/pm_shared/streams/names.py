"""Every stream, consumer group and Redis key of the fleet, defined once.

A logical stream (`pm:intents`) has P partitions. Partition p lives under the key `{pm:intents:p}`
and its dead-letter queue under `{pm:intents:p}:dlq`: the braces are a Redis Cluster hash tag, so
a stream, its DLQ and its failure records share one slot and a DLQ move can be one MULTI.
All messages of one intent go to partition hash(intent id) mod P, which keeps per-intent order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pm_shared import fleet

# Consumer groups are named after the consuming service (pm_shared.fleet).
GROUP_ORCHESTRATOR = fleet.ORCHESTRATOR.name
GROUP_LEDGER_WRITER = fleet.LEDGER_WRITER.name
GROUP_ADAPTER_IPPS = fleet.ADAPTER_IPPS.name
GROUP_ADAPTER_QP = fleet.ADAPTER_QP.name
GROUP_RECONCILER = fleet.RECONCILER.name
GROUP_WEBHOOKS = fleet.WEBHOOKS.name


@dataclass(frozen=True)
class StreamSpec:
    """A logical stream and the consumer groups that read it."""

    name: str
    groups: tuple[str, ...]
    about: str


INTENTS = StreamSpec("pm:intents", (GROUP_ORCHESTRATOR,), "intents accepted by the gateway")
LEDGER_COMMANDS = StreamSpec("pm:ledger:commands", (GROUP_LEDGER_WRITER,), "one intent's ledger work")
LEDGER_RESULTS = StreamSpec("pm:ledger:results", (GROUP_ORCHESTRATOR,), "the ledger's answer per command")
IPPS_JOBS = StreamSpec("pm:psp:ipps:jobs", (GROUP_ADAPTER_IPPS,), "PromptPay payouts for the IPPS adapter")
QP_JOBS = StreamSpec("pm:psp:qp:jobs", (GROUP_ADAPTER_QP,), "SBP top-ups for the QP adapter")
IPPS_HINTS = StreamSpec("pm:psp:ipps:hints", (GROUP_ADAPTER_IPPS,), "verified IPPS callbacks (hints)")
QP_HINTS = StreamSpec("pm:psp:qp:hints", (GROUP_ADAPTER_QP,), "verified QP callbacks (hints)")
PSP_RESULTS = StreamSpec("pm:psp:results", (GROUP_ORCHESTRATOR,), "final PSP outcomes from the adapters")
EVENTS = StreamSpec("pm:events", (GROUP_RECONCILER, GROUP_WEBHOOKS), "every intent state change")

ALL_STREAMS: tuple[StreamSpec, ...] = (
    INTENTS,
    LEDGER_COMMANDS,
    LEDGER_RESULTS,
    IPPS_JOBS,
    QP_JOBS,
    IPPS_HINTS,
    QP_HINTS,
    PSP_RESULTS,
    EVENTS,
)


def streams_read_by(group: str) -> tuple[StreamSpec, ...]:
    """The logical streams consumer group `group` reads."""
    return tuple(s for s in ALL_STREAMS if group in s.groups)


def spec(name: str) -> StreamSpec:
    """The spec of logical stream `name`; ValueError names the known ones."""
    for candidate in ALL_STREAMS:
        if candidate.name == name:
            return candidate
    known = ", ".join(s.name for s in ALL_STREAMS)
    raise ValueError(f"unknown stream {name!r}; known streams: {known}")


def partition_of(intent_id: str, partitions: int) -> int:
    """The partition of an intent: stable across processes and restarts (unlike `hash()`)."""
    if partitions == 1:
        return 0
    digest = hashlib.blake2b(intent_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def stream_key(name: str, partition: int) -> str:
    return f"{{{name}:{partition}}}"


def dlq_key(name: str, partition: int) -> str:
    return f"{{{name}:{partition}}}:dlq"


def failures_key(name: str, partition: int) -> str:
    """Hash of entry id → first/last failure of entries that failed and are still pending."""
    return f"{{{name}:{partition}}}:failures"


def parse_key(key: str) -> tuple[str, int]:
    """Split a partition key (`{pm:intents:0}` or its DLQ) into logical name and partition."""
    if not key.startswith("{") or "}" not in key:
        raise ValueError(f"not a stream key: {key!r}")
    tag = key[1 : key.index("}")]
    name, _, partition = tag.rpartition(":")
    if not name or not partition.isdigit():
        raise ValueError(f"not a stream key: {key!r}")
    return name, int(partition)
