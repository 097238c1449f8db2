"""pm-adapter-ipps as a real process against the IPPS sandbox as a real process (over HTTP).

Jobs go on `pm:psp:ipps:jobs`; what the adapter answers is read from `pm:psp:results`, what it
recorded from `pm.psp_tx_map`, and what was paid from the sandbox's `/_sim/ledger`. Faults are asked
for with the sandbox's magic amounts (a job carries no headers).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared import db
from pm_shared.messages import Party, PspJob, PspResult, new_message_id, now
from pm_shared.streams import Publisher
from pm_shared.streams.names import IPPS_JOBS
from pm_shared.testing.fixtures import eventually
from pm_shared.testing.fleet import Fleet, delete_streams, free_port

pytestmark = pytest.mark.slow

RESULTS_KEY = "{pm:psp:results:0}"
MOBILE = "0812345678"
AMOUNT_OK = 10_000
AMOUNT_INSUFFICIENT_LIQUIDITY = 40_001
AMOUNT_TIMEOUT = 50_004
AMOUNT_UNKNOWN_3 = 20_003
AMOUNT_SERVER_ERROR_AFTER_COMMIT = 50_000
AMOUNT_SERVER_ERROR = 50_003

_result = msgspec.json.Decoder(PspResult)

Start = Callable[..., Awaitable[str]]


@pytest.fixture
async def stack(fleet: Fleet, redis: Redis, tmp_path: Path) -> AsyncIterator[Start]:
    """Starts the sandbox and then the adapter pointed at it; yields the sandbox's base URL."""
    await delete_streams(redis, IPPS_JOBS.name, "pm:psp:results")
    keys = [k async for k in redis.scan_iter(match="{pm:psp:*")]
    if keys:
        await redis.delete(*keys)
    sandboxes: list[subprocess.Popen[bytes]] = []

    async def start(**adapter_env: str) -> str:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PM_")}
        env.update({"PM_IPPS_SANDBOX_PORT": str(port), "PM_LOG_LEVEL": "WARNING"})
        sandboxes.append(start_sandbox(env, tmp_path / "sandbox.stderr"))
        url = f"http://127.0.0.1:{port}"

        async def sandbox_up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(sandbox_up, timeout=15, what="the IPPS sandbox answers /healthz")
        settings = {
            "PM_ADAPTER_IPPS_IPPS_URL": url,
            "PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS": "1000",
            "PM_ADAPTER_IPPS_POLL_INITIAL_MS": "50",
            "PM_ADAPTER_IPPS_POLL_MAX_MS": "200",
            "PM_STREAM_RETRY_DELAY_MS": "200",
            **adapter_env,
        }
        await fleet.start("adapter-ipps", env=settings).wait_ready()
        return url

    try:
        yield start
    finally:
        for popen in sandboxes:
            popen.kill()
            popen.wait(10)


def start_sandbox(env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    """`python -m pm_adapter_ipps.sandbox` with `env`, its stderr to `stderr`."""
    with stderr.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "pm_adapter_ipps.sandbox"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def job(amount: int, *, target: Party | None = None) -> PspJob:
    return PspJob(
        intent_id=str(uuid.uuid4()),
        message_id=new_message_id(),
        produced_at=now(),
        psp="ipps",
        action="payout",
        amount=amount,
        currency="THB",
        target=target or Party(kind="promptpay", proxy_type="MSISDN", proxy_value=MOBILE),
        idempotency_key=f"pm-payout-{uuid.uuid4().hex}",
    )


async def publish(redis: Redis, message: PspJob) -> None:
    await Publisher(redis).publish(IPPS_JOBS, message)


async def results_of(redis: Redis, job_id: str) -> list[PspResult]:
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(RESULTS_KEY))
    found = [_result.decode(fields[b"m"]) for _, fields in entries]
    return [r for r in found if r.job_id == job_id]


async def final_results(redis: Redis, sent: PspJob, count: int = 1, timeout: float = 20) -> list[PspResult]:
    """The job's results once `count` final ones arrived (UNKNOWN ones before them included)."""

    async def arrived() -> bool:
        finals = [r for r in await results_of(redis, sent.message_id) if r.status != "UNKNOWN"]
        return len(finals) >= count

    await eventually(arrived, timeout=timeout, what=f"{count} final result(s) for job {sent.message_id}")
    return await results_of(redis, sent.message_id)


async def ledger(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer: dict[str, Any] = (await http.get(f"{url}/_sim/ledger")).json()
    return answer


async def tx_row(database_url: str, key: str) -> dict[str, Any]:
    conn = await db.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", key)
    finally:
        await conn.close()
    assert row is not None, f"no psp_tx_map row for {key}"
    return dict(row)


async def test_success_pays_once_and_publishes_one_succeeded_result(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK)
    await publish(redis, sent)
    (result,) = await final_results(redis, sent)
    assert (result.status, result.intent_id, result.psp, result.failure_code) == (
        "SUCCEEDED",
        sent.intent_id,
        "ipps",
        None,
    )
    assert result.psp_reference and result.psp_reference.startswith("trf_")
    assert await ledger(url) == {"paid": AMOUNT_OK, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("final", "SUCCEEDED", "SUCCESS")
    assert (row["intent_id"], row["job_message_id"], row["amount"]) == (
        sent.intent_id,
        sent.message_id,
        AMOUNT_OK,
    )
    assert row["psp_inquiry_id"] and row["psp_transfer_id"] == result.psp_reference
    assert row["confirm_sent_at"] is not None and row["result_message_id"] == result.message_id


async def test_insufficient_liquidity_fails_with_the_psps_code(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_INSUFFICIENT_LIQUIDITY)
    await publish(redis, sent)
    (result,) = await final_results(redis, sent)
    assert (result.status, result.failure_code) == ("FAILED", "INSUFFICIENT_LIQUIDITY")
    assert (await ledger(url))["paid"] == 0
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"]) == ("final", "FAILED", "INSUFFICIENT_LIQUIDITY")


async def test_an_inquiry_refusal_fails_with_its_code_before_any_confirm(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK, target=Party(kind="promptpay", proxy_type="MSISDN", proxy_value="0812345404"))
    await publish(redis, sent)
    (result,) = await final_results(redis, sent)
    assert (result.status, result.failure_code, result.psp_reference) == ("FAILED", "PROXY_NOT_FOUND", None)
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["confirm_sent_at"]) == ("final", None)  # proof: no confirm was ever sent


async def test_a_confirm_that_times_out_after_commit_ends_succeeded_paid_once(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_TIMEOUT)
    await publish(redis, sent)
    results = await final_results(redis, sent)
    assert [r.status for r in results] == ["SUCCEEDED"]  # never FAILED, and no UNKNOWN was needed
    assert await ledger(url) == {"paid": AMOUNT_TIMEOUT, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"]) == ("final", "SUCCEEDED")
    assert row["polls"] >= 1


async def test_a_500_after_commit_ends_succeeded_paid_once(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_SERVER_ERROR_AFTER_COMMIT)
    await publish(redis, sent)
    results = await final_results(redis, sent)
    assert [r.status for r in results] == ["SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_SERVER_ERROR_AFTER_COMMIT, "transfers": 1}
    assert (await tx_row(database_url, sent.idempotency_key))["phase"] == "final"


async def test_a_503_at_confirm_is_unknown_never_failed_and_the_row_shows_a_confirm_was_sent(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="2")
    sent = job(AMOUNT_SERVER_ERROR)
    await publish(redis, sent)

    async def unknown() -> bool:
        return [r.status for r in await results_of(redis, sent.message_id)] == ["UNKNOWN"]

    await eventually(unknown, timeout=15, what="one UNKNOWN result")
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"]) == ("confirm_sent", "UNKNOWN")
    assert row["confirm_sent_at"] is not None


async def test_unknown_status_reads_end_succeeded_after_polling(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_UNKNOWN_3)
    await publish(redis, sent)
    results = await final_results(redis, sent)
    assert [r.status for r in results] == ["SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["polls"]) == ("final", "SUCCEEDED", 4)  # 3 UNKNOWN, then SUCCESS


async def test_still_unknown_after_the_bounded_polls_publishes_unknown_then_the_sweep_finishes_it(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="2", PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="200")
    sent = job(AMOUNT_UNKNOWN_3)
    await publish(redis, sent)
    results = await final_results(redis, sent)
    assert [r.status for r in results] == ["UNKNOWN", "SUCCEEDED"]
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"]) == ("final", "SUCCEEDED")


async def test_a_redelivered_job_republishes_the_same_result_without_paying_again(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK)
    await publish(redis, sent)
    (first,) = await final_results(redis, sent)
    await publish(redis, sent)  # the same job again: same message id, same idempotency key
    first_again, second = await final_results(redis, sent, count=2)
    assert first_again == first
    assert second == first  # same message id, same produced_at, same reference
    assert await ledger(url) == {"paid": AMOUNT_OK, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["attempts"]) == ("final", 2)


async def test_many_jobs_at_once_each_pay_once(stack: Start, redis: Redis) -> None:
    url = await stack()
    jobs = [job(AMOUNT_OK + n) for n in range(1, 21)]
    for sent in jobs:
        await publish(redis, sent)
    outcomes = await asyncio.gather(*(final_results(redis, sent) for sent in jobs))
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    assert await ledger(url) == {"paid": sum(s.amount for s in jobs), "transfers": len(jobs)}
