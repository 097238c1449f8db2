"""pm-adapter-ipps as a real process against the IPPS sandbox as a real process (over HTTP).

Jobs go on `pm:psp:ipps:jobs`; what the adapter answers is read from `pm:psp:results`, what it
recorded from `pm.psp_tx_map`, and what was paid from the sandbox's `/_sim/ledger`. Faults are asked
for with the sandbox's magic amounts (a job carries no headers).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_adapter_ipps import queries
from pm_adapter_ipps.client import Inquiry, IppsClient, Transfer, Unavailable
from pm_adapter_ipps.handlers import ConfirmNotTaken, PayoutAdapter
from pm_adapter_ipps.poller import StatusPoller
from pm_shared import db
from pm_shared.fleet import ADAPTER_IPPS, IPPS_SANDBOX
from pm_shared.messages import Party, PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.connection import as_str
from pm_shared.streams.names import GROUP_ADAPTER_IPPS, IPPS_HINTS, IPPS_JOBS, dlq_key
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, delete_streams

pytestmark = pytest.mark.slow

RESULTS_KEY = "{pm:psp:results:0}"
HINTS_KEY = "{pm:psp:ipps:hints:0}"
MOBILE = "0812345678"
AMOUNT_OK = 10_000
AMOUNT_INSUFFICIENT_LIQUIDITY = 40_001
AMOUNT_TIMEOUT = 50_004
AMOUNT_UNKNOWN_3 = 20_003
AMOUNT_PENDING = 20_002
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

    async def start(sandbox_env: Mapping[str, str] | None = None, **adapter_env: str) -> str:
        port = processes.free_port()
        variables = {"PM_LOG_LEVEL": "WARNING", **(sandbox_env or {})}
        env = processes.environment(IPPS_SANDBOX, variables, port=port)
        with (tmp_path / "sandbox.stderr").open("wb") as stderr:
            sandboxes.append(processes.spawn(IPPS_SANDBOX, env, stderr=stderr))
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
        await fleet.start(ADAPTER_IPPS.name, env=settings).wait_ready()
        return url

    try:
        yield start
    finally:
        for popen in sandboxes:
            popen.kill()
            popen.wait(10)
        # Dead-lettered jobs left behind would be reviewed by any orchestrator a later test starts.
        fleet.kill_all()
        await delete_streams(redis, IPPS_JOBS.name, IPPS_HINTS.name, "pm:psp:results")


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


async def publish_hint(redis: Redis, hint: PspHint) -> None:
    await Publisher(redis).publish(IPPS_HINTS, hint)


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


async def test_a_503_at_confirm_is_never_failed_and_is_confirmed_again_until_dead_lettered(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="2", PM_STREAM_CLAIM_INTERVAL_MS="100")
    sent = job(AMOUNT_SERVER_ERROR)  # every confirm answers 503 and commits nothing
    await publish(redis, sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(dlq_key(IPPS_JOBS.name, 0))) == 1

    await eventually(dead_lettered, timeout=20, what="the job dead-lettered after its last delivery")
    assert await results_of(redis, sent.message_id) == []  # never FAILED: the PSP may yet say more
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    # `confirm_sent`: the orchestrator must not fence it (a confirm went out), it raises an alert.
    assert (row["phase"], row["status"], row["attempts"]) == ("confirm_sent", "UNKNOWN", 3)
    assert row["confirm_sent_at"] is not None


async def test_a_confirm_that_never_took_ends_failed_not_executed_once_its_inquiry_expired(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_INQUIRY_TTL_S": "1"},
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="2",
        PM_STREAM_CLAIM_INTERVAL_MS="100",
        PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="300",
        PM_ADAPTER_IPPS_NOT_EXECUTED_AFTER_S="0.5",
    )
    sent = job(AMOUNT_SERVER_ERROR)  # every confirm answers 503 and commits nothing
    await publish(redis, sent)
    [result] = [r for r in await final_results(redis, sent, timeout=30) if r.status != "UNKNOWN"]
    assert (result.status, result.failure_code) == ("FAILED", "NOT_EXECUTED")
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"]) == ("final", "FAILED", "NOT_EXECUTED")
    assert row["inquiry_expires_at"] is not None and row["result_message_id"] == result.message_id
    # Final: a replay of the job (`pm dlq replay`) republishes the same result and confirms nothing.
    await publish(redis, sent)
    await eventually(
        lambda: _count_finals(redis, sent, 2), timeout=10, what="the replayed job's result republished"
    )
    finals = [r for r in await results_of(redis, sent.message_id) if r.status != "UNKNOWN"]
    assert {r.message_id for r in finals} == {result.message_id}
    assert await ledger(url) == {"paid": 0, "transfers": 0}


async def _count_finals(redis: Redis, sent: PspJob, count: int) -> bool:
    return len([r for r in await results_of(redis, sent.message_id) if r.status != "UNKNOWN"]) >= count


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


# ---- the dead-letter fence (see docs/psp.md) --------------------------------------------------------

# What the orchestrator runs for a job found in the jobs DLQ: it may fail the intent only if this
# finishes the row, i.e. no confirm was ever sent.
FENCE = """
UPDATE pm.psp_tx_map
SET phase = 'final', status = 'FAILED', failure_code = 'JOB_DEAD_LETTERED', result_message_id = $2,
    result_at = now(), updated_at = now()
WHERE idempotency_key = $1 AND phase IN ('recorded', 'inquired')
"""
# …or, when the adapter never recorded the job at all (a row without a result: the adapter adds one).
FENCE_NEW_ROW = """
INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount, currency,
                           phase, status, failure_code)
VALUES ($1, 'ipps', 'payout', $2, $3, $4, $5, 'final', 'FAILED', 'JOB_DEAD_LETTERED')
"""


async def fence(database_url: str, key: str) -> str:
    """Run the orchestrator's fence on `key`'s row; its status word (`UPDATE 1` when it won)."""
    conn = await db.connect(database_url)
    try:
        status: str = await conn.execute(FENCE, key, new_message_id())
    finally:
        await conn.close()
    return status


async def test_a_job_fenced_before_it_arrives_is_never_sent_and_its_failure_is_republished(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack()
    sent = job(AMOUNT_OK)
    conn = await db.connect(database_url)
    try:
        await conn.execute(
            FENCE_NEW_ROW, sent.intent_id, sent.idempotency_key, sent.message_id, sent.amount, sent.currency
        )
    finally:
        await conn.close()
    await publish(redis, sent)
    (result,) = await final_results(redis, sent)
    assert (result.status, result.failure_code, result.psp_reference) == ("FAILED", "JOB_DEAD_LETTERED", None)
    await publish(redis, sent)  # a replay of the job: the same result again, still nothing sent
    assert await final_results(redis, sent, count=2) == [result, result]
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["psp_inquiry_id"], row["confirm_sent_at"]) == ("final", None, None)
    assert (row["attempts"], row["result_message_id"]) == (3, result.message_id)


async def test_a_job_fenced_during_its_inquiry_is_never_confirmed(
    stack: Start, redis: Redis, database_url: str
) -> None:
    # Every IPPS answer takes 1.5 s: time enough to fence the row while the inquiry is out.
    url = await stack({"PM_IPPS_SANDBOX_LATENCY_MS": "1500"}, PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS="5000")
    sent = job(AMOUNT_OK)
    await publish(redis, sent)

    async def recorded() -> bool:
        conn = await db.connect(database_url)
        try:
            phase: str | None = await conn.fetchval(
                "SELECT phase FROM pm.psp_tx_map WHERE idempotency_key = $1", sent.idempotency_key
            )
        finally:
            await conn.close()
        return phase == "recorded"

    await eventually(recorded, timeout=10, what="the job recorded, its inquiry out")
    assert await fence(database_url, sent.idempotency_key) == "UPDATE 1"
    (result,) = await final_results(redis, sent)
    assert (result.status, result.failure_code) == ("FAILED", "JOB_DEAD_LETTERED")
    await asyncio.sleep(2)  # a confirm sent anyway would have landed by now
    assert await ledger(url) == {"paid": 0, "transfers": 0}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["confirm_sent_at"], row["psp_inquiry_id"]) == ("final", None, None)


class FencingPool:
    """The adapter's pool, with the orchestrator's fence committed just before MARK_CONFIRM_SENT runs."""

    def __init__(self, pool: db.Pool, key: str) -> None:
        self.pool = pool
        self.key = key
        self.fenced: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pool, name)

    async def fetchval(self, query: str, *args: object) -> Any:
        if query == queries.MARK_CONFIRM_SENT:
            self.fenced = await self.pool.execute(FENCE, self.key, new_message_id())
        return await self.pool.fetchval(query, *args)


class RecordingClient(IppsClient):
    """An IPPS that answers every inquiry and records what it is asked to confirm."""

    def __init__(self) -> None:
        super().__init__(httpx.AsyncClient(base_url="http://ipps.invalid"))
        self.confirms: list[str] = []

    async def inquiry(self, amount: int, target: Party) -> Inquiry:
        return Inquiry(inquiry_id=f"inq_{uuid.uuid4().hex}", amount=amount)

    async def confirm(self, inquiry_id: str, amount: int, key: str) -> Transfer:
        self.confirms.append(key)
        return Transfer(transfer_id=f"trf_{uuid.uuid4().hex}", idempotency_key=key, status="SUCCESS")


async def test_a_fence_between_inquiry_and_confirm_stops_the_confirm(db_pool: db.Pool) -> None:
    sent = job(AMOUNT_OK)
    pool = FencingPool(db_pool, sent.idempotency_key)
    client = RecordingClient()
    published: list[PspResult] = []

    async def publish_result(result: PspResult) -> None:
        published.append(result)

    adapter = PayoutAdapter(
        cast("db.Pool", pool), client, StatusPoller(client, 0.01, 0.01, 1), publish_result
    )
    await adapter.on_job(Delivery(entry_id="1-0", key=IPPS_JOBS.name, message=sent, attempt=1))
    assert pool.fenced == "UPDATE 1"  # the fence won: the row was `inquired`
    assert client.confirms == []
    assert [(r.status, r.failure_code, r.job_id) for r in published] == [
        ("FAILED", "JOB_DEAD_LETTERED", sent.message_id)
    ]
    row = await db_pool.fetchrow(
        "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", sent.idempotency_key
    )
    assert row is not None and (row["phase"], row["confirm_sent_at"]) == ("final", None)
    assert row["result_message_id"] == published[0].message_id


class FlakyClient(RecordingClient):
    """The first confirm gets no answer and never reaches IPPS; the status shows what was confirmed."""

    def __init__(self) -> None:
        super().__init__()
        self.paid: dict[str, Transfer] = {}

    async def confirm(self, inquiry_id: str, amount: int, key: str) -> Transfer:
        self.confirms.append(key)
        if len(self.confirms) == 1:
            raise Unavailable("POST /v1/transfers: ConnectError")
        return self.paid.setdefault(
            key, Transfer(transfer_id=f"trf_{uuid.uuid4().hex}", idempotency_key=key, status="SUCCESS")
        )

    async def status(self, key: str) -> Transfer | None:
        return self.paid.get(key)


async def test_a_confirm_that_never_reached_ipps_is_sent_again_by_the_redelivery(db_pool: db.Pool) -> None:
    sent = job(AMOUNT_OK)
    client = FlakyClient()
    published: list[PspResult] = []

    async def publish_result(result: PspResult) -> None:
        published.append(result)

    adapter = PayoutAdapter(db_pool, client, StatusPoller(client, 0.01, 0.01, 2), publish_result)
    with pytest.raises(ConfirmNotTaken):
        await adapter.on_job(Delivery(entry_id="1-0", key=IPPS_JOBS.name, message=sent, attempt=1))
    assert published == []
    await adapter.on_job(Delivery(entry_id="1-0", key=IPPS_JOBS.name, message=sent, attempt=2))
    assert client.confirms == [sent.idempotency_key] * 2  # the same key both times: one payment at most
    assert [(r.status, r.psp_reference) for r in published] == [
        ("SUCCEEDED", client.paid[sent.idempotency_key].transfer_id)
    ]
    row = await db_pool.fetchrow(
        "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", sent.idempotency_key
    )
    assert row is not None and (row["phase"], row["status"], row["attempts"]) == ("final", "SUCCEEDED", 2)


# ---- hints (verified IPPS callbacks, never trusted) ------------------------------------------------


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
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(PM_ADAPTER_IPPS_POLL_ATTEMPTS="1", PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="60000")
    sent = job(AMOUNT_UNKNOWN_3)  # status reads 1–3 answer UNKNOWN, read 4 SUCCESS
    await publish(redis, sent)

    async def unknown() -> bool:
        return [r.status for r in await results_of(redis, sent.message_id)] == ["UNKNOWN"]

    await eventually(unknown, timeout=10, what="one UNKNOWN result (status read 1)")
    (first,) = await results_of(redis, sent.message_id)
    assert first.psp_reference is not None
    started = time.monotonic()
    # Reads 2 and 3: the callback claims SUCCESS, IPPS still says UNKNOWN, so nothing is finished.
    for polls in (2, 3):
        await publish_hint(redis, hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference))
        await hints_consumed(redis)
        row = await tx_row(database_url, sent.idempotency_key)
        assert (row["phase"], row["polls"], row["psp_status"]) == ("confirm_sent", polls, "UNKNOWN")
        assert [r.status for r in await results_of(redis, sent.message_id)] == ["UNKNOWN"]
    # Read 4, by IPPS's transfer id alone: SUCCESS, and that finishes it.
    await publish_hint(redis, hint_for(sent, key=None, reference=first.psp_reference))
    results = await final_results(redis, sent)
    assert time.monotonic() - started < 30  # the sweep would not even have looked before 60 s
    assert [r.status for r in results] == ["UNKNOWN", "SUCCEEDED"]
    assert results[1].psp_reference == first.psp_reference
    assert await ledger(url) == {"paid": AMOUNT_UNKNOWN_3, "transfers": 1}
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["polls"]) == ("final", "SUCCEEDED", 4)
    # A late duplicate callback for the final row: acked, nothing read, nothing republished.
    await publish_hint(redis, hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference))
    await hints_consumed(redis)
    assert len(await results_of(redis, sent.message_id)) == 2


async def test_forged_hints_finish_nothing(stack: Start, redis: Redis, database_url: str) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_PENDING_MS": "60000"},  # IPPS keeps the transfer PENDING for the whole test
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="1",
        PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="60000",
    )
    sent = job(AMOUNT_PENDING)
    await publish(redis, sent)

    async def unknown() -> bool:
        return [r.status for r in await results_of(redis, sent.message_id)] == ["UNKNOWN"]

    await eventually(unknown, timeout=10, what="one UNKNOWN result")
    (first,) = await results_of(redis, sent.message_id)
    other = job(AMOUNT_OK)
    forged = [
        hint_for(sent, key=sent.idempotency_key, reference=first.psp_reference),  # IPPS says PENDING
        hint_for(sent, key=sent.idempotency_key, reference=None, claimed="FAILED"),
        hint_for(sent, key=None, reference="trf_forged"),  # no such transfer of ours
        hint_for(other, key=other.idempotency_key, reference="trf_forged"),  # no such attempt
        msgspec.structs.replace(hint_for(sent, key=sent.idempotency_key, reference=None), psp="qp"),
    ]
    for hint in forged:
        await publish_hint(redis, hint)
    await hints_consumed(redis)
    assert [r.status for r in await results_of(redis, sent.message_id)] == ["UNKNOWN"]
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("confirm_sent", "UNKNOWN", "PENDING")
    assert row["polls"] == 3  # the job's own read, then one read per hint naming the key
    assert await ledger(url) == {"paid": 0, "transfers": 1}


# ---- throughput --------------------------------------------------------------------------------------


async def test_a_pending_transfer_does_not_hold_up_the_jobs_read_after_it(
    stack: Start, redis: Redis, database_url: str
) -> None:
    url = await stack(
        {"PM_IPPS_SANDBOX_PENDING_MS": "4000"},  # IPPS decides 4 s after the confirm
        PM_ADAPTER_IPPS_POLL_ATTEMPTS="100",  # enough reads to see it decide, at most 200 ms apart
    )
    pending = job(AMOUNT_PENDING)
    await publish(redis, pending)

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
        await publish(redis, sent)
    outcomes = await asyncio.gather(*(final_results(redis, sent) for sent in behind))
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    # Only now, with every job behind it paid, does IPPS decide the first one.
    assert await results_of(redis, pending.message_id) == []
    assert [r.status for r in await final_results(redis, pending)] == ["SUCCEEDED"]
    assert await ledger(url) == {
        "paid": AMOUNT_PENDING + sum(s.amount for s in behind),
        "transfers": 1 + len(behind),
    }


async def test_jobs_overlap_their_ipps_calls(stack: Start, redis: Redis) -> None:
    latency_s = 0.05
    await stack({"PM_IPPS_SANDBOX_LATENCY_MS": str(int(latency_s * 1000))})
    jobs = [job(AMOUNT_OK + 100 + n) for n in range(50)]
    started = time.monotonic()
    for sent in jobs:
        await publish(redis, sent)
    outcomes = await asyncio.gather(*(final_results(redis, sent, timeout=30) for sent in jobs))
    elapsed = time.monotonic() - started
    assert all([r.status for r in results] == ["SUCCEEDED"] for results in outcomes)
    serialized = len(jobs) * 2 * latency_s  # an inquiry and a confirm each
    print(
        f"\n{len(jobs)} payouts, {latency_s * 1000:.0f} ms per IPPS call: {elapsed:.2f} s"
        f" (serialized: {serialized:.1f} s)"
    )
    # Generous on purpose (a loaded 2-core machine): serialized calls could not come close.
    assert elapsed < 0.6 * serialized
