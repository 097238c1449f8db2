"""pm-adapter-ipps against the orchestrator's dead-letter fence (see docs/psp.md): a job whose row the
orchestrator finished is never confirmed, whether the fence lands before the job arrives, during its
inquiry or just before its confirm, and a confirm that never reached IPPS is sent again.

The first two run the adapter and the IPPS sandbox as real processes (fixtures in conftest.py); the
last two drive the adapter's handler in this process, against stand-ins for IPPS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, cast

import httpx
import pytest

from pm_adapter_ipps import queries
from pm_adapter_ipps.client import Inquiry, IppsClient, Transfer, Unavailable
from pm_adapter_ipps.handlers import ConfirmNotTaken, PayoutAdapter
from pm_adapter_ipps.poller import StatusPoller
from pm_shared import db
from pm_shared.messages import Party, PspHint, PspJob, PspResult, new_message_id
from pm_shared.streams import Delivery
from pm_shared.streams.names import IPPS_JOBS
from pm_tools.testing.fixtures import eventually

pytestmark = pytest.mark.slow

AMOUNT_OK = 10_000

Start = Callable[..., Awaitable[str]]
NewJob = Callable[..., PspJob]
Publish = Callable[[PspJob | PspHint], Awaitable[None]]
FinalResults = Callable[..., Awaitable[list[PspResult]]]
Ledger = Callable[[str], Awaitable[dict[str, Any]]]
TxRow = Callable[[str], Awaitable[dict[str, Any]]]

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
    stack: Start,
    database_url: str,
    job: NewJob,
    publish: Publish,
    final_results: FinalResults,
    ledger: Ledger,
    tx_row: TxRow,
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
    await publish(sent)
    (result,) = await final_results(sent)
    assert (result.status, result.failure_code, result.psp_reference) == ("FAILED", "JOB_DEAD_LETTERED", None)
    await publish(sent)  # a replay of the job: the same result again, still nothing sent
    assert await final_results(sent, count=2) == [result, result]
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["psp_inquiry_id"], row["confirm_sent_at"]) == ("final", None, None)
    assert (row["attempts"], row["result_message_id"]) == (3, result.message_id)


async def test_a_job_fenced_during_its_inquiry_is_never_confirmed(
    stack: Start,
    database_url: str,
    job: NewJob,
    publish: Publish,
    final_results: FinalResults,
    ledger: Ledger,
    tx_row: TxRow,
) -> None:
    # Every IPPS answer takes 1.5 s: time enough to fence the row while the inquiry is out.
    url = await stack({"PM_IPPS_SANDBOX_LATENCY_MS": "1500"}, PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS="5000")
    sent = job(AMOUNT_OK)
    await publish(sent)

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
    (result,) = await final_results(sent)
    assert (result.status, result.failure_code) == ("FAILED", "JOB_DEAD_LETTERED")
    await asyncio.sleep(2)  # a confirm sent anyway would have landed by now
    assert await ledger(url) == {"paid": 0, "returned": 0, "transfers": 0}
    row = await tx_row(sent.idempotency_key)
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


async def test_a_fence_between_inquiry_and_confirm_stops_the_confirm(db_pool: db.Pool, job: NewJob) -> None:
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


async def test_a_confirm_that_never_reached_ipps_is_sent_again_by_the_redelivery(
    db_pool: db.Pool, job: NewJob
) -> None:
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
