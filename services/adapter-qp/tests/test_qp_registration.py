"""pm-adapter-qp when QP's registration goes wrong, and the jobs it refuses before calling QP: a lost
answer is looked up by order, repeated 5xx end dead-lettered but never FAILED, a refusal fails with
QP's code, the sweep finds what a job gave up on, and a fenced row, another currency or another PSP's
job registers nothing.

The adapter and the QP sandbox run as real processes (fixtures in conftest.py), except for the race
with the orchestrator's fence, which drives the adapter's handler in this process. Faults are asked
for with `sandbox-fault=<spec>` in the job's purpose (a job carries no headers); a purpose travels
with every registration of the order, so such a fault hits each one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx
import pytest
from redis.asyncio import Redis

from pm_adapter_qp.client import QpClient
from pm_adapter_qp.handlers import CollectAdapter
from pm_adapter_qp.poller import OrderPoller
from pm_shared import db
from pm_shared.db import Pool
from pm_shared.messages import PspHint, PspJob, PspResult
from pm_shared.psp.adapter.results import Attempts, Row
from pm_shared.streams import Delivery
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Proc

pytestmark = pytest.mark.slow

JOBS_DLQ_KEY = "{pm:psp:qp:jobs:0}:dlq"
SECRET = "qp-sandbox-secret"  # the sandbox's default: the adapter's default must match it
AUTH = {"Authorization": f"Bearer {SECRET}"}

Sandbox = Callable[[], Awaitable[str]]
Start = Callable[..., Awaitable[tuple[str, Proc]]]
NewJob = Callable[..., PspJob]
Publish = Callable[[PspJob | PspHint], Awaitable[None]]
ResultsOf = Callable[[str], Awaitable[list[PspResult]]]
WaitResults = Callable[..., Awaitable[list[PspResult]]]
AssertPending = Callable[[PspResult, PspJob], str]
QrOfOrder = Callable[[str, str], Awaitable[dict[str, Any] | None]]
Payer = Callable[[str, str, str], Awaitable[None]]
TxRow = Callable[[str], Awaitable[dict[str, Any]]]
Calls = Callable[[Proc, str, str], Awaitable[float]]
Registrations = Callable[[Proc], Awaitable[float]]


# --- registration faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["timeout=3000", "5xx-after-commit"])
async def test_a_registration_whose_answer_is_lost_is_looked_up_by_order_and_ends_pending_then_paid(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    qr_of_order: QrOfOrder,
    payer: Payer,
    calls: Calls,
    fault: str,
) -> None:
    url, adapter = await stack()
    sent = job(purpose=f"top-up sandbox-fault={fault}")
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    at_qp = await qr_of_order(url, sent.idempotency_key)
    assert at_qp is not None and at_qp["qr_id"] == qr_id
    assert await calls(adapter, "register", "unavailable") == 1
    assert await calls(adapter, "register", "ok") == 0
    assert await calls(adapter, "find", "ok") >= 1
    await payer(url, qr_id, "pay")
    results = await wait_results(sent, final=1)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED"]


async def test_a_registration_failing_with_5xx_every_time_is_never_failed_and_ends_dead_lettered(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    qr_of_order: QrOfOrder,
    tx_row: TxRow,
    calls: Calls,
) -> None:
    url, adapter = await stack(PM_ADAPTER_QP_POLL_ATTEMPTS="2")
    sent = job(purpose="top-up sandbox-fault=5xx")
    await publish(sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(JOBS_DLQ_KEY)) == 1

    await eventually(dead_lettered, timeout=15, what="the job in the jobs DLQ after its last delivery")
    ((_, fields),) = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(JOBS_DLQ_KEY))
    assert (fields[b"reason"], fields[b"attempts"]) == (b"max_deliveries", b"3")
    assert await results_of(sent.message_id) == []  # never FAILED: QP refused nothing
    assert await qr_of_order(url, sent.idempotency_key) is None
    row = await tx_row(sent.idempotency_key)
    # confirm_sent: a registration was sent, so the DLQ handling must not void the intent blindly
    assert (row["phase"], row["status"], row["attempts"]) == ("confirm_sent", None, 3)
    assert await calls(adapter, "register", "unavailable") == 3  # one per delivery, same order


async def test_a_refused_registration_fails_with_qps_code(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    qr_of_order: QrOfOrder,
    tx_row: TxRow,
) -> None:
    url, _ = await stack()
    sent = job(purpose="top-up sandbox-fault=reject-registration")
    await publish(sent)
    (result,) = await wait_results(sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "REGISTRATION_REJECTED",
        None,
    )
    assert await qr_of_order(url, sent.idempotency_key) is None
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["failure_code"]) == ("final", "REGISTRATION_REJECTED")


async def test_the_sweep_finds_the_qr_of_a_job_that_gave_up_announces_it_pending_and_finishes_it(
    stack: Start,
    database_url: str,
    job: NewJob,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    payer: Payer,
    tx_row: TxRow,
    registrations: Registrations,
) -> None:
    # One delivery's budget here: 0.2 s registration + 1 lookup of 0.2 s after 0.2 s = 0.6 s.
    url, adapter = await stack(PM_ADAPTER_QP_POLL_ATTEMPTS="1", PM_ADAPTER_QP_REQUEST_TIMEOUT_MS="200")
    sent = job()
    conn = await db.connect(database_url)
    try:  # a job whose registration answer was lost, dead-lettered before QP showed the QR
        await conn.execute(
            """
            INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount,
                                       currency, phase, confirm_sent_at, attempts)
            VALUES ($1, 'qp', 'collect', $2, $3, $4, 'RUB', 'confirm_sent', now(), 3)
            """,
            sent.intent_id,
            sent.idempotency_key,
            sent.message_id,
            sent.amount,
        )
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        body = {"order": sent.idempotency_key, "amount": sent.amount, "purpose": "top-up", "ttl_s": 600}
        assert (await http.post("/v1/qrs", json=body)).status_code == 201  # the lost registration
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(url, qr_id, "pay")
    results = await wait_results(sent, final=1)
    assert [(r.status, r.psp_reference) for r in results] == [("PENDING", qr_id), ("SUCCEEDED", qr_id)]
    assert await registrations(adapter) == 0  # the sweep only reads
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_transfer_id"]) == ("final", "SUCCEEDED", qr_id)


# --- refusals before QP ----------------------------------------------------------------------------


async def test_a_row_fenced_final_before_registration_is_never_registered(
    stack: Start,
    database_url: str,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    qr_of_order: QrOfOrder,
    tx_row: TxRow,
    registrations: Registrations,
) -> None:
    url, adapter = await stack()
    sent = job()
    conn = await db.connect(database_url)
    try:  # what the orchestrator's fence of a dead-lettered job leaves: final, FAILED, no result id
        await conn.execute(
            """
            INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount,
                                       currency, phase, status, failure_code)
            VALUES ($1, 'qp', 'collect', $2, $3, $4, 'RUB', 'final', 'FAILED', 'PSP_JOB_DEAD_LETTERED')
            """,
            sent.intent_id,
            sent.idempotency_key,
            sent.message_id,
            sent.amount,
        )
    finally:
        await conn.close()
    await publish(sent)
    (result,) = await wait_results(sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "PSP_JOB_DEAD_LETTERED",
        None,
    )
    await publish(sent)
    _, again = await wait_results(sent, final=2)
    assert again == result  # the id given on first publication is kept
    assert await qr_of_order(url, sent.idempotency_key) is None
    assert await registrations(adapter) == 0
    assert (await tx_row(sent.idempotency_key))["result_message_id"] == result.message_id


async def test_a_row_fenced_between_recording_and_confirm_sent_is_not_registered(
    sandbox: Sandbox, db_pool: Pool, job: NewJob, qr_of_order: QrOfOrder
) -> None:
    """The race itself, in process: the fence lands after the adapter read its row as `recorded`."""
    url = await sandbox()
    published: list[PspResult] = []

    async def collect(result: PspResult) -> None:
        published.append(result)

    async with httpx.AsyncClient(base_url=url, timeout=2) as http:
        client = QpClient(http, SECRET)
        adapter = CollectAdapter(db_pool, client, OrderPoller(client, 0.01, 0.05, 2), collect, 600)

        class RecordThenFence(Attempts):
            async def start(self, job: PspJob) -> Row | None:
                row = await super().start(job)
                assert row is not None and row["phase"] == "recorded"
                await db_pool.execute(
                    "UPDATE pm.psp_tx_map SET phase = 'final', status = 'FAILED', failure_code = 'FENCED'"
                    " WHERE id = $1",
                    row["id"],
                )
                return row  # stale: still says `recorded`

        adapter.attempts = RecordThenFence(db_pool, collect, "qp", "collect")
        sent = job()
        await adapter.on_job(Delivery(entry_id="1-0", key="{pm:psp:qp:jobs:0}", message=sent, attempt=1))
        assert [(r.status, r.failure_code) for r in published] == [("FAILED", "FENCED")]
        assert await qr_of_order(url, sent.idempotency_key) is None
        row = await db_pool.fetchrow(
            "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", sent.idempotency_key
        )
        assert row is not None and (row["phase"], row["confirm_sent_at"]) == ("final", None)


async def test_a_job_in_another_currency_fails_unsupported_currency_without_calling_qp(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    qr_of_order: QrOfOrder,
    tx_row: TxRow,
    registrations: Registrations,
) -> None:
    url, adapter = await stack()
    sent = job(currency="THB")
    await publish(sent)
    (result,) = await wait_results(sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "UNSUPPORTED_CURRENCY",
        None,
    )
    assert await qr_of_order(url, sent.idempotency_key) is None
    assert await registrations(adapter) == 0
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["currency"], row["confirm_sent_at"]) == ("final", "THB", None)


async def test_a_job_for_another_psp_is_dead_lettered_as_wrong_job(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    registrations: Registrations,
) -> None:
    _, adapter = await stack()
    sent = job(psp="ipps")
    await publish(sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(JOBS_DLQ_KEY)) == 1

    await eventually(dead_lettered, timeout=10, what="the wrong job in the jobs DLQ")
    ((_, fields),) = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(JOBS_DLQ_KEY))
    assert fields[b"reason"] == b"wrong_job"
    assert await results_of(sent.message_id) == []
    assert await registrations(adapter) == 0
