"""pm-adapter-qp as a real process against the QP sandbox as a real process (over HTTP).

Jobs go on `pm:psp:qp:jobs` and hints on `pm:psp:qp:hints`; what the adapter answers is read from
`pm:psp:results`, what it recorded from `pm.psp_tx_map`, what it called from its `/metrics`, and
what QP holds from the sandbox (which also plays the payer). Faults are asked for with
`sandbox-fault=<spec>` in the job's purpose (a job carries no headers); a purpose travels with every
registration of the order, so such a fault hits each one.
"""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_adapter_qp.client import QpClient
from pm_adapter_qp.handlers import CollectAdapter
from pm_adapter_qp.poller import OrderPoller
from pm_shared import db
from pm_shared.db import Pool
from pm_shared.fleet import ADAPTER_QP, QP_SANDBOX
from pm_shared.messages import Party, PspHint, PspJob, PspResult, new_message_id, now, psp_key
from pm_shared.psp import sbp_links as links
from pm_shared.psp.adapter.results import Attempts, Row
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.names import GROUP_ADAPTER_QP, QP_HINTS, QP_JOBS
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, Proc, delete_streams, get, sample_value

pytestmark = pytest.mark.slow

RESULTS_KEY = "{pm:psp:results:0}"
JOBS_DLQ_KEY = "{pm:psp:qp:jobs:0}:dlq"
HINTS_KEY = "{pm:psp:qp:hints:0}"
SECRET = "qp-sandbox-secret"  # the sandbox's default: the adapter's default must match it
AUTH = {"Authorization": f"Bearer {SECRET}"}
AMOUNT = 150_000  # 1 500.00 RUB in kopecks

_result = msgspec.json.Decoder(PspResult)


@dataclass(frozen=True)
class Stack:
    url: str
    """The sandbox's base URL."""
    adapter: Proc


Start = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """Starts QP sandboxes on free ports with their default settings; yields a starter of base URLs."""
    started: list[subprocess.Popen[bytes]] = []

    async def start() -> str:
        port = processes.free_port()
        env = processes.environment(QP_SANDBOX, port=port)
        with (tmp_path / f"sandbox-{len(started)}.stderr").open("wb") as stderr:
            started.append(processes.spawn(QP_SANDBOX, env, stderr=stderr))
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=15, what="the QP sandbox answers /healthz")
        return url

    try:
        yield start
    finally:
        for popen in started:
            popen.kill()
            popen.wait(10)


@pytest.fixture
async def stack(fleet: Fleet, redis: Redis, sandbox: Callable[[], Awaitable[str]]) -> AsyncIterator[Start]:
    """Starts a sandbox and then the adapter pointed at it (fast timeouts and sweep unless overridden)."""
    await delete_streams(redis, QP_JOBS.name, QP_HINTS.name, "pm:psp:results")

    async def start(**adapter_env: str) -> Stack:
        url = await sandbox()
        settings = {
            "PM_ADAPTER_QP_QP_URL": url,
            "PM_ADAPTER_QP_REQUEST_TIMEOUT_MS": "1000",
            "PM_ADAPTER_QP_POLL_INITIAL_MS": "50",
            "PM_ADAPTER_QP_POLL_MAX_MS": "200",
            "PM_ADAPTER_QP_SWEEP_INTERVAL_MS": "200",
            "PM_ADAPTER_QP_SWEEP_MAX_IDLE_MS": "400",
            "PM_STREAM_RETRY_DELAY_MS": "200",
            **adapter_env,
        }
        proc = fleet.start(ADAPTER_QP.name, env=settings)
        await proc.wait_ready()
        return Stack(url, proc)

    try:
        yield start
    finally:
        # Dead-lettered jobs left behind would be reviewed by any orchestrator a later test starts.
        fleet.kill_all()
        await delete_streams(redis, QP_JOBS.name, QP_HINTS.name, "pm:psp:results")


def job(
    amount: int = AMOUNT, *, currency: str = "RUB", purpose: str | None = "top-up", psp: str = "qp"
) -> PspJob:
    intent_id = str(uuid.uuid4())
    return PspJob(
        intent_id=intent_id,
        message_id=new_message_id(),
        produced_at=now(),
        psp=psp,
        action="collect",
        amount=amount,
        currency=currency,
        target=Party(kind="user", id="u-2001"),
        idempotency_key=psp_key(intent_id, "psp_collect"),
        purpose=purpose,
    )


def hint(sent: PspJob, *, qr_id: str | None, claimed: str, key: str | None = "") -> PspHint:
    return PspHint(
        intent_id=sent.intent_id,
        message_id=new_message_id(),
        produced_at=now(),
        psp="qp",
        idempotency_key=sent.idempotency_key if key == "" else key,
        psp_reference=qr_id,
        claimed_status=claimed,
        event_id=f"{qr_id}-9",
    )


async def publish(redis: Redis, message: PspJob | PspHint) -> None:
    await Publisher(redis).publish(QP_JOBS if isinstance(message, PspJob) else QP_HINTS, message)


async def results_of(redis: Redis, job_id: str) -> list[PspResult]:
    entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(RESULTS_KEY))
    found = [_result.decode(fields[b"m"]) for _, fields in entries]
    return [r for r in found if r.job_id == job_id]


async def wait_results(
    redis: Redis, sent: PspJob, *, final: int = 0, pending: int = 0, timeout: float = 10
) -> list[PspResult]:
    """The job's results once at least `final` final and `pending` PENDING ones arrived."""

    async def arrived() -> bool:
        statuses = [r.status for r in await results_of(redis, sent.message_id)]
        return sum(s != "PENDING" for s in statuses) >= final and statuses.count("PENDING") >= pending

    what = f"{final} final and {pending} PENDING result(s) for job {sent.message_id}"
    await eventually(arrived, timeout=timeout, what=what)
    return await results_of(redis, sent.message_id)


async def settle(seconds: float = 0.8) -> None:
    """Give the adapter time to do what it must not do (a second result, a registration)."""
    await asyncio.sleep(seconds)


async def qp(url: str, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        return await http.request(method, path)


async def qr_of_order(url: str, order: str) -> dict[str, Any] | None:
    response = await qp(url, "GET", "/v1/qrs?" + str(httpx.QueryParams({"order": order})))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def payer(url: str, qr_id: str, action: str) -> None:
    response = await qp(url, "POST", f"/v1/sandbox/qrs/{qr_id}/{action}")
    assert response.status_code == 200, response.text


async def tx_row(database_url: str, key: str) -> dict[str, Any]:
    conn = await db.connect(database_url)
    try:
        row = await conn.fetchrow("SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", key)
    finally:
        await conn.close()
    assert row is not None, f"no psp_tx_map row for {key}"
    return dict(row)


async def calls(proc: Proc, operation: str, outcome: str) -> float:
    """How many `operation` calls to QP ended with `outcome`, from the adapter's /metrics."""
    reply = await get(proc.url("/metrics"))
    assert reply is not None and reply.status == 200
    count = sample_value(
        reply.text, "pm_psp_call_seconds_count", psp="qp", operation=operation, outcome=outcome
    )
    return count or 0.0


async def registrations(proc: Proc) -> float:
    total = 0.0
    for outcome in ("ok", "refused", "conflict", "unavailable", "not_found"):
        total += await calls(proc, "register", outcome)
    return total


def assert_pending(result: PspResult, sent: PspJob) -> str:
    """`result` is a PENDING answer to `sent` with a valid link for its amount; returns the QR id."""
    assert (result.status, result.intent_id, result.psp, result.failure_code) == (
        "PENDING",
        sent.intent_id,
        "qp",
        None,
    )
    assert result.payment_link is not None and result.psp_reference is not None
    link = links.parse(result.payment_link)  # crc checked
    assert (link.type, link.amount, link.currency, link.qr_id) == (
        "02",
        sent.amount,
        "RUB",
        result.psp_reference,
    )
    assert result.payment_link.startswith(f"https://qr.nspk.ru/{result.psp_reference}?")
    assert result.expires_at is not None
    ttl = result.expires_at - datetime.now(UTC)
    assert timedelta(seconds=500) < ttl <= timedelta(seconds=600)  # qr_ttl_s, 600 by default
    return result.psp_reference


# --- the payer decides -----------------------------------------------------------------------------


async def test_a_registered_qr_is_pending_with_its_link_then_the_payment_succeeds_once(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack()
    sent = job()
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    at_qp = await qr_of_order(s.url, sent.idempotency_key)
    assert at_qp is not None and (at_qp["qr_id"], at_qp["payload"], at_qp["amount"], at_qp["status"]) == (
        qr_id,
        pending.payment_link,
        AMOUNT,
        "NEW",
    )
    assert at_qp["purpose"] == "top-up"
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["psp_transfer_id"], row["psp_status"], row["status"]) == (
        "confirm_sent",
        qr_id,
        "NEW",
        None,
    )
    assert row["confirm_sent_at"] is not None

    await payer(s.url, qr_id, "pay")
    results = await wait_results(redis, sent, final=1)
    await settle()
    results = await results_of(redis, sent.message_id)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED"]  # exactly one final result
    done = results[1]
    paid = await qr_of_order(s.url, sent.idempotency_key)
    assert paid is not None and paid["status"] == "ACCEPTED"
    assert (done.psp_reference, done.failure_code, done.detail) == (
        qr_id,
        None,
        f"transaction {paid['transaction_id']}",
    )
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"], row["trans_ref"]) == (
        "final",
        "SUCCEEDED",
        "ACCEPTED",
        paid["transaction_id"],
    )
    assert row["result_message_id"] == done.message_id
    assert await registrations(s.adapter) == 1


@pytest.mark.parametrize(("action", "code"), [("reject", "REJECTED"), ("expire", "EXPIRED")])
async def test_a_rejected_or_expired_qr_fails_with_that_code(
    stack: Start, redis: Redis, database_url: str, action: str, code: str
) -> None:
    s = await stack()
    sent = job()
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(s.url, qr_id, action)
    results = await wait_results(redis, sent, final=1)
    assert [(r.status, r.failure_code, r.psp_reference) for r in results] == [
        ("PENDING", None, qr_id),
        ("FAILED", code, qr_id),
    ]
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"], row["psp_status"]) == (
        "final",
        "FAILED",
        code,
        code,
    )


async def test_a_qr_born_expired_fails_expired_without_a_pending_result(
    stack: Start, redis: Redis, database_url: str
) -> None:
    await stack()
    sent = job(purpose="top-up sandbox-fault=expire")
    await publish(redis, sent)
    (result,) = await wait_results(redis, sent, final=1)
    assert (result.status, result.failure_code, result.payment_link) == ("FAILED", "EXPIRED", None)
    assert (await tx_row(database_url, sent.idempotency_key))["phase"] == "final"


# --- redeliveries ----------------------------------------------------------------------------------


async def test_a_job_redelivered_after_its_final_result_republishes_the_identical_result(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack()
    sent = job()
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    assert pending.psp_reference is not None
    await payer(s.url, pending.psp_reference, "pay")
    _, first = await wait_results(redis, sent, final=1)
    await publish(redis, sent)  # the same job again: same message id, same idempotency key
    results = await wait_results(redis, sent, final=2)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED", "SUCCEEDED"]
    assert results[2] == first  # same message id, same produced_at, same reference
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["attempts"]) == ("final", 2)
    assert await registrations(s.adapter) == 1


async def test_a_job_redelivered_while_pending_republishes_pending_with_the_same_link_and_no_new_qr(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(redis, sent)
    (first,) = await wait_results(redis, sent, pending=1)
    await publish(redis, sent)
    results = await wait_results(redis, sent, pending=2)
    assert [r.status for r in results] == ["PENDING", "PENDING"]
    again = results[1]
    assert (again.payment_link, again.psp_reference, again.expires_at) == (
        first.payment_link,
        first.psp_reference,
        first.expires_at,
    )
    assert await registrations(s.adapter) == 1  # the redelivery read the QR; it registered nothing
    assert await calls(s.adapter, "get", "ok") == 1
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["attempts"], row["psp_transfer_id"]) == ("confirm_sent", 2, first.psp_reference)


# --- registration faults ---------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["timeout=3000", "5xx-after-commit"])
async def test_a_registration_whose_answer_is_lost_is_looked_up_by_order_and_ends_pending_then_paid(
    stack: Start, redis: Redis, database_url: str, fault: str
) -> None:
    s = await stack()
    sent = job(purpose=f"top-up sandbox-fault={fault}")
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    at_qp = await qr_of_order(s.url, sent.idempotency_key)
    assert at_qp is not None and at_qp["qr_id"] == qr_id
    assert await calls(s.adapter, "register", "unavailable") == 1
    assert await calls(s.adapter, "register", "ok") == 0
    assert await calls(s.adapter, "find", "ok") >= 1
    await payer(s.url, qr_id, "pay")
    results = await wait_results(redis, sent, final=1)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED"]


async def test_a_registration_failing_with_5xx_every_time_is_never_failed_and_ends_dead_lettered(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack(PM_ADAPTER_QP_POLL_ATTEMPTS="2")
    sent = job(purpose="top-up sandbox-fault=5xx")
    await publish(redis, sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(JOBS_DLQ_KEY)) == 1

    await eventually(dead_lettered, timeout=15, what="the job in the jobs DLQ after its last delivery")
    ((_, fields),) = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(JOBS_DLQ_KEY))
    assert (fields[b"reason"], fields[b"attempts"]) == (b"max_deliveries", b"3")
    assert await results_of(redis, sent.message_id) == []  # never FAILED: QP refused nothing
    assert await qr_of_order(s.url, sent.idempotency_key) is None
    row = await tx_row(database_url, sent.idempotency_key)
    # confirm_sent: a registration was sent, so the DLQ handling must not void the intent blindly
    assert (row["phase"], row["status"], row["attempts"]) == ("confirm_sent", None, 3)
    assert await calls(s.adapter, "register", "unavailable") == 3  # one per delivery, same order


async def test_a_refused_registration_fails_with_qps_code(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack()
    sent = job(purpose="top-up sandbox-fault=reject-registration")
    await publish(redis, sent)
    (result,) = await wait_results(redis, sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "REGISTRATION_REJECTED",
        None,
    )
    assert await qr_of_order(s.url, sent.idempotency_key) is None
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["failure_code"]) == ("final", "REGISTRATION_REJECTED")


async def test_the_sweep_finds_the_qr_of_a_job_that_gave_up_announces_it_pending_and_finishes_it(
    stack: Start, redis: Redis, database_url: str
) -> None:
    # One delivery's budget here: 0.2 s registration + 1 lookup of 0.2 s after 0.2 s = 0.6 s.
    s = await stack(PM_ADAPTER_QP_POLL_ATTEMPTS="1", PM_ADAPTER_QP_REQUEST_TIMEOUT_MS="200")
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
    async with httpx.AsyncClient(base_url=s.url, headers=AUTH) as http:
        body = {"order": sent.idempotency_key, "amount": sent.amount, "purpose": "top-up", "ttl_s": 600}
        assert (await http.post("/v1/qrs", json=body)).status_code == 201  # the lost registration
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(s.url, qr_id, "pay")
    results = await wait_results(redis, sent, final=1)
    assert [(r.status, r.psp_reference) for r in results] == [("PENDING", qr_id), ("SUCCEEDED", qr_id)]
    assert await registrations(s.adapter) == 0  # the sweep only reads
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_transfer_id"]) == ("final", "SUCCEEDED", qr_id)


# --- hints -----------------------------------------------------------------------------------------


async def test_a_hint_finishes_a_paid_qr_without_waiting_for_the_sweep(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(s.url, qr_id, "pay")
    await settle()
    assert [r.status for r in await results_of(redis, sent.message_id)] == ["PENDING"]  # no sweep ran
    await publish(redis, hint(sent, qr_id=qr_id, claimed="ACCEPTED", key=None))  # found by QR id alone
    results = await wait_results(redis, sent, final=1, timeout=5)
    assert [(r.status, r.psp_reference) for r in results] == [("PENDING", qr_id), ("SUCCEEDED", qr_id)]
    assert (await tx_row(database_url, sent.idempotency_key))["status"] == "SUCCEEDED"


async def test_a_forged_hint_changes_nothing_and_an_unknown_one_is_acknowledged(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(redis, sent)
    (pending,) = await wait_results(redis, sent, pending=1)
    qr_id = assert_pending(pending, sent)
    stranger = job()
    await publish(redis, hint(stranger, qr_id="AD" + "X" * 30, claimed="ACCEPTED"))  # no such attempt
    await publish(redis, hint(sent, qr_id=qr_id, claimed="ACCEPTED"))  # a lie: the QR is unpaid

    async def read_by_the_hint() -> bool:
        return int((await tx_row(database_url, sent.idempotency_key))["polls"]) >= 1

    await eventually(read_by_the_hint, timeout=5, what="the adapter read the QR after the hint")
    await settle()
    assert [r.status for r in await results_of(redis, sent.message_id)] == ["PENDING"]
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("confirm_sent", None, "NEW")
    at_qp = await qr_of_order(s.url, sent.idempotency_key)
    assert at_qp is not None and at_qp["status"] == "NEW"
    pending_hints = await redis.xpending(HINTS_KEY, GROUP_ADAPTER_QP)
    assert pending_hints["pending"] == 0  # both acknowledged
    assert int(await redis.xlen(f"{HINTS_KEY}:dlq")) == 0


# --- refusals before QP ----------------------------------------------------------------------------


async def test_a_row_fenced_final_before_registration_is_never_registered(
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack()
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
    await publish(redis, sent)
    (result,) = await wait_results(redis, sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "PSP_JOB_DEAD_LETTERED",
        None,
    )
    await publish(redis, sent)
    _, again = await wait_results(redis, sent, final=2)
    assert again == result  # the id given on first publication is kept
    assert await qr_of_order(s.url, sent.idempotency_key) is None
    assert await registrations(s.adapter) == 0
    assert (await tx_row(database_url, sent.idempotency_key))["result_message_id"] == result.message_id


async def test_a_row_fenced_between_recording_and_confirm_sent_is_not_registered(
    sandbox: Callable[[], Awaitable[str]], db_pool: Pool
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
    stack: Start, redis: Redis, database_url: str
) -> None:
    s = await stack()
    sent = job(currency="THB")
    await publish(redis, sent)
    (result,) = await wait_results(redis, sent, final=1)
    assert (result.status, result.failure_code, result.psp_reference) == (
        "FAILED",
        "UNSUPPORTED_CURRENCY",
        None,
    )
    assert await qr_of_order(s.url, sent.idempotency_key) is None
    assert await registrations(s.adapter) == 0
    row = await tx_row(database_url, sent.idempotency_key)
    assert (row["phase"], row["currency"], row["confirm_sent_at"]) == ("final", "THB", None)


async def test_a_job_for_another_psp_is_dead_lettered_as_wrong_job(stack: Start, redis: Redis) -> None:
    s = await stack()
    sent = job(psp="ipps")
    await publish(redis, sent)

    async def dead_lettered() -> bool:
        return int(await redis.xlen(JOBS_DLQ_KEY)) == 1

    await eventually(dead_lettered, timeout=10, what="the wrong job in the jobs DLQ")
    ((_, fields),) = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(JOBS_DLQ_KEY))
    assert fields[b"reason"] == b"wrong_job"
    assert await results_of(redis, sent.message_id) == []
    assert await registrations(s.adapter) == 0
