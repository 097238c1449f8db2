"""pm-adapter-ipps as a real process against the IPPS sandbox as a real process (over HTTP): what a
payout job ends as, paid at most once, and how fast jobs go through.

Jobs go on `pm:psp:ipps:jobs`; what the adapter answers is read from `pm:psp:results`, what it
recorded from `pm.psp_tx_map`, and what was paid from the sandbox's `/_sim/ledger` (the fixtures are
in conftest.py). Faults are asked for with the sandbox's magic amounts (a job carries no headers).
The dead-letter fence is tested in test_ipps_fence.py, the callbacks' hints in test_ipps_hints.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pm_shared import db
from pm_shared.messages import Party, PspHint, PspJob, PspResult
from pm_shared.streams.names import IPPS_JOBS, dlq_key
from pm_tools.testing.fixtures import eventually

pytestmark = pytest.mark.slow

AMOUNT_OK = 10_000
AMOUNT_INSUFFICIENT_LIQUIDITY = 40_001
AMOUNT_TIMEOUT = 50_004
AMOUNT_UNKNOWN_3 = 20_003
AMOUNT_PENDING = 20_002
AMOUNT_SERVER_ERROR_AFTER_COMMIT = 50_000
AMOUNT_SERVER_ERROR = 50_003

Start = Callable[..., Awaitable[str]]
NewJob = Callable[..., PspJob]
Publish = Callable[[PspJob | PspHint], Awaitable[None]]
ResultsOf = Callable[[str], Awaitable[list[PspResult]]]
FinalResults = Callable[..., Awaitable[list[PspResult]]]
Ledger = Callable[[str], Awaitable[dict[str, Any]]]
TxRow = Callable[[str], Awaitable[dict[str, Any]]]


async def test_success_pays_once_and_publishes_one_succeeded_result(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK)
    await publish(sent)
    (result,) = await final_results(sent)
    assert (result.status, result.intent_id, result.psp, result.failure_code) == (
        "SUCCEEDED",
        sent.intent_id,
        "ipps",
        None,
    )
    assert result.psp_reference and result.psp_reference.startswith("trf_")
    assert await ledger(url) == {"paid": AMOUNT_OK, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("final", "SUCCEEDED", "SUCCESS")
    assert (row["intent_id"], row["job_message_id"], row["amount"]) == (
        sent.intent_id,
        sent.message_id,
        AMOUNT_OK,
    )
    assert row["psp_inquiry_id"] and row["psp_transfer_id"] == result.psp_reference
    assert row["confirm_sent_at"] is not None and row["result_message_id"] == result.message_id


async def test_insufficient_liquidity_fails_with_the_psps_code(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_INSUFFICIENT_LIQUIDITY)
    await publish(sent)
    (result,) = await final_results(sent)
    assert (result.status, result.failure_code) == ("FAILED", "INSUFFICIENT_LIQUIDITY")
    assert (await ledger(url))["paid"] == 0
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"]) == ("final", "FAILED", "INSUFFICIENT_LIQUIDITY")


async def test_an_inquiry_refusal_fails_with_its_code_before_any_confirm(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK, target=Party(kind="promptpay", proxy_type="MSISDN", proxy_value="0812345404"))
    await publish(sent)
    (result,) = await final_results(sent)
    assert (result.status, result.failure_code, result.psp_reference) == ("FAILED", "PROXY_NOT_FOUND", None)
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["confirm_sent_at"]) == ("final", None)  # proof: no confirm was ever sent


async def test_a_confirm_that_times_out_after_commit_ends_succeeded_paid_once(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_TIMEOUT)
    await publish(sent)
    results = await final_results(sent)
    assert [r.status for r in results] == ["SUCCEEDED"]  # never FAILED, and no UNKNOWN was needed
    assert await ledger(url) == {"paid": AMOUNT_TIMEOUT, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"]) == ("final", "SUCCEEDED")
    assert row["polls"] >= 1


async def test_a_500_after_commit_ends_succeeded_paid_once(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_SERVER_ERROR_AFTER_COMMIT)
    await publish(sent)
    results = await final_results(sent)
    assert [r.status for r in results] == ["SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_SERVER_ERROR_AFTER_COMMIT, "returned": 0, "transfers": 1}
    assert (await tx_row(sent.idempotency_key))["phase"] == "final"


async def test_a_503_at_confirm_is_never_failed_and_is_confirmed_again_until_dead_lettered(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    ledger: Ledger,
    tx_row: TxRow,
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="2", PM_STREAM_CLAIM_INTERVAL_MS="100")
    sent = job(AMOUNT_SERVER_ERROR)  # every confirm answers 503 and commits nothing
    await publish(sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(dlq_key(IPPS_JOBS.name, 0))) == 1

    await eventually(dead_lettered, timeout=20, what="the job dead-lettered after its last delivery")
    assert await results_of(sent.message_id) == []  # never FAILED: the PSP may yet say more
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}
    row = await tx_row(sent.idempotency_key)
    # `confirm_sent`: the orchestrator must not fence it (a confirm went out), it raises an alert.
    assert (row["phase"], row["status"], row["attempts"]) == ("confirm_sent", "UNKNOWN", 3)
    assert row["confirm_sent_at"] is not None


async def test_a_confirm_that_never_took_ends_failed_not_executed_once_its_inquiry_expired(
    stack: Start,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    final_results: FinalResults,
    ledger: Ledger,
    tx_row: TxRow,
) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_INQUIRY_TTL_S": "1"},
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="2",
        PM_STREAM_CLAIM_INTERVAL_MS="100",
        PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="300",
        PM_ADAPTER_IPPS_NOT_EXECUTED_AFTER_S="0.5",
    )
    sent = job(AMOUNT_SERVER_ERROR)  # every confirm answers 503 and commits nothing
    await publish(sent)
    [result] = [r for r in await final_results(sent, timeout=30) if r.status != "UNKNOWN"]
    assert (result.status, result.failure_code) == ("FAILED", "NOT_EXECUTED")
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"]) == ("final", "FAILED", "NOT_EXECUTED")
    assert row["inquiry_expires_at"] is not None and row["result_message_id"] == result.message_id
    # Final: a replay of the job (`pm dlq replay`) republishes the same result and confirms nothing.
    await publish(sent)

    async def republished() -> bool:
        return len([r for r in await results_of(sent.message_id) if r.status != "UNKNOWN"]) >= 2

    await eventually(republished, timeout=10, what="the replayed job's result republished")
    finals = [r for r in await results_of(sent.message_id) if r.status != "UNKNOWN"]
    assert {r.message_id for r in finals} == {result.message_id}
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}


async def test_unknown_status_reads_end_succeeded_after_polling(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_UNKNOWN_3)
    await publish(sent)
    results = await final_results(sent)
    assert [r.status for r in results] == ["SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["polls"]) == ("final", "SUCCEEDED", 4)  # 3 UNKNOWN, then SUCCESS


async def test_still_unknown_after_the_bounded_polls_publishes_unknown_then_the_sweep_finishes_it(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="2", PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="200")
    sent = job(AMOUNT_UNKNOWN_3)
    await publish(sent)
    results = await final_results(sent)
    assert [r.status for r in results] == ["UNKNOWN", "SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"]) == ("final", "SUCCEEDED")


async def test_a_redelivered_job_republishes_the_same_result_without_paying_again(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger, tx_row: TxRow
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK)
    await publish(sent)
    (first,) = await final_results(sent)
    await publish(sent)  # the same job again: same message id, same idempotency key
    first_again, second = await final_results(sent, count=2)
    assert first_again == first
    assert second == first  # same message id, same produced_at, same reference
    assert await ledger(url) == {"paid": AMOUNT_OK, "returned": 0, "transfers": 1}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["attempts"]) == ("final", 2)


async def test_many_jobs_at_once_each_pay_once(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults, ledger: Ledger
) -> None:
    url = await stack()
    jobs = [job(AMOUNT_OK + n) for n in range(1, 21)]
    for sent in jobs:
        await publish(sent)
    outcomes = await asyncio.gather(*(final_results(sent) for sent in jobs))
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    assert await ledger(url) == {"paid": sum(s.amount for s in jobs), "returned": 0, "transfers": len(jobs)}


# ---- throughput --------------------------------------------------------------------------------------


async def test_a_pending_transfer_does_not_hold_up_the_jobs_read_after_it(
    stack: Start,
    database_url: str,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    final_results: FinalResults,
    ledger: Ledger,
) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_PENDING_MS": "4000"},  # IPPS decides 4 s after the confirm
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="100",  # enough reads to see it decide, at most 200 ms apart
    )
    pending = job(AMOUNT_PENDING)
    await publish(pending)

    async def confirmed() -> bool:
        conn = await db.connect(database_url)
        try:
            phase: str | None = await conn.fetchval(
                "SELECT phase FROM pm.psp_tx_map WHERE idempotency_key = $1", pending.idempotency_key
            )
        finally:
            await conn.close()
        return phase == "confirm_sent"

    await eventually(confirmed, timeout=10, what="the first job confirmed, IPPS still deciding")
    behind = [job(AMOUNT_OK + 200 + n) for n in range(20)]
    for sent in behind:
        await publish(sent)
    outcomes = await asyncio.gather(*(final_results(sent) for sent in behind))
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    # Only now, with every job behind it paid, does IPPS decide the first one.
    assert await results_of(pending.message_id) == []
    assert [r.status for r in await final_results(pending)] == ["SUCCEEDED"]
    assert await ledger(url) == {
        "paid": AMOUNT_PENDING + sum(s.amount for s in behind),
        "returned": 0,
        "transfers": 1 + len(behind),
    }


async def test_jobs_overlap_their_ipps_calls(
    stack: Start, job: NewJob, publish: Publish, final_results: FinalResults
) -> None:
    latency_s = 0.05
    await stack({"PM_IPPS_SANDBOX_LATENCY_MS": str(int(latency_s * 1000))})
    jobs = [job(AMOUNT_OK + 100 + n) for n in range(50)]
    started = time.monotonic()
    for sent in jobs:
        await publish(sent)
    outcomes = await asyncio.gather(*(final_results(sent, timeout=30) for sent in jobs))
    elapsed = time.monotonic() - started
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    serialized = len(jobs) * 2 * latency_s  # an inquiry and a confirm each
    print(
        f"\n{len(jobs)} payouts, {latency_s * 1000:.0f} ms per IPPS call: {elapsed:.2f} s"
        f" (serialized: {serialized:.1f} s)"
    )
    # Generous on purpose (a loaded 2-core machine): serialized calls could not come close.
    assert elapsed < 0.6 * serialized
