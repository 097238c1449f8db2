"""pm-adapter-ipps's hints: verified IPPS callbacks the gateway passed on, never trusted. A hint makes
the adapter read the transfer's status at IPPS sooner; only IPPS's own answer finishes a payout.

The adapter and the IPPS sandbox run as real processes (fixtures in conftest.py).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared.messages import PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.streams.connection import as_str
from pm_shared.streams.names import GROUP_ADAPTER_IPPS
from pm_tools.testing.fixtures import eventually

pytestmark = pytest.mark.slow

HINTS_KEY = "{pm:psp:ipps:hints:0}"
AMOUNT_OK = 10_000
AMOUNT_UNKNOWN_3 = 20_003
AMOUNT_PENDING = 20_002

Start = Callable[..., Awaitable[str]]
NewJob = Callable[..., PspJob]
Publish = Callable[[PspJob | PspHint], Awaitable[None]]
ResultsOf = Callable[[str], Awaitable[list[PspResult]]]
FinalResults = Callable[..., Awaitable[list[PspResult]]]
Ledger = Callable[[str], Awaitable[dict[str, Any]]]
TxRow = Callable[[str], Awaitable[dict[str, Any]]]


def hint_for(sent: PspJob, *, key: str | None, reference: str | None, claimed: str = "SUCCESS") -> PspHint:
    return PspHint(
        intent_id=sent.intent_id,
        message_id=new_message_id(),
        produced_at=now(),
        psp="ipps",
        idempotency_key=key,
        psp_reference=reference,
        claimed_status=claimed,
        event_id=uuid.uuid4().hex,
    )


async def hints_consumed(redis: Redis) -> None:
    """Wait until the adapter has read and acked every hint published so far."""

    async def consumed() -> bool:
        groups = await redis.xinfo_groups(HINTS_KEY)
        mine = [g for g in groups if as_str(g["name"]) == GROUP_ADAPTER_IPPS]
        return bool(mine) and mine[0]["lag"] == 0 and mine[0]["pending"] == 0

    await eventually(consumed, timeout=10, what="every hint read and acked")


async def test_a_hint_finishes_an_unknown_payout_long_before_the_sweep_and_only_when_ipps_agrees(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    final_results: FinalResults,
    ledger: Ledger,
    tx_row: TxRow,
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="1", PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="60000")
    sent = job(AMOUNT_UNKNOWN_3)  # status reads 1–3 answer UNKNOWN, read 4 SUCCESS
    await publish(sent)

    async def unknown() -> bool:
        return [r.status for r in await results_of(sent.message_id)] == ["UNKNOWN"]

    await eventually(unknown, timeout=10, what="one UNKNOWN result (status read 1)")
    (first,) = await results_of(sent.message_id)
    assert first.psp_reference is not None
    started = time.monotonic()
    # Reads 2 and 3: the callback claims SUCCESS, IPPS still says UNKNOWN, so nothing is finished.
    for polls in (2, 3):
        await publish(hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference))
        await hints_consumed(redis)
        row = await tx_row(sent.idempotency_key)
        assert (row["phase"], row["polls"], row["psp_status"]) == ("confirm_sent", polls, "UNKNOWN")
        assert [r.status for r in await results_of(sent.message_id)] == ["UNKNOWN"]
    # Read 4, by IPPS's transfer id alone: SUCCESS, and that finishes it.
    await publish(hint_for(sent, key=None, reference=first.psp_reference))
    results = await final_results(sent)
    assert time.monotonic() - started < 30  # the sweep would not even have looked before 60 s
    assert [r.status for r in results] == ["UNKNOWN", "SUCCEEDED"]
    assert results[1].psp_reference == first.psp_reference
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["polls"]) == ("final", "SUCCEEDED", 4)
    # A late duplicate callback for the final row: acked, nothing read, nothing republished.
    await publish(hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference))
    await hints_consumed(redis)
    assert len(await results_of(sent.message_id)) == 2


async def test_forged_hints_finish_nothing(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    ledger: Ledger,
    tx_row: TxRow,
) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_PENDING_MS": "60000"},  # IPPS keeps the transfer PENDING for the whole test
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="1",
        PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="60000",
    )
    sent = job(AMOUNT_PENDING)
    await publish(sent)

    async def unknown() -> bool:
        return [r.status for r in await results_of(sent.message_id)] == ["UNKNOWN"]

    await eventually(unknown, timeout=10, what="one UNKNOWN result")
    (first,) = await results_of(sent.message_id)
    other = job(AMOUNT_OK)
    forged = [
        hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference),  # IPPS says PENDING
        hint_for(sent, key=sent.idempotency_key, reference=None, claimed="FAILED"),
        hint_for(sent, key=None, reference="trf_forged"),  # no such transfer of ours
        hint_for(other, key=other.idempotency_key, reference="trf_forged"),  # no such attempt
        msgspec.structs.replace(hint_for(sent, key=sent.idempotency_key, reference=None), psp="qp"),
    ]
    for hint in forged:
        await publish(hint)
    await hints_consumed(redis)
    assert [r.status for r in await results_of(sent.message_id)] == ["UNKNOWN"]
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("confirm_sent", "UNKNOWN", "PENDING")
    assert row["polls"] == 3  # the job's own read, then one read per hint naming the key
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 1}
