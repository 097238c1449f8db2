"""pm-adapter-qp as a real process against the QP sandbox as a real process (over HTTP): a collect
job's QR is registered once, announced PENDING with its link, and finished once by what the payer
did, whether the adapter learns it by its own reads or sooner from a hint, and whatever redeliveries.

Jobs go on `pm:psp:qp:jobs` and hints on `pm:psp:qp:hints`; what the adapter answers is read from
`pm:psp:results`, what it recorded from `pm.psp_tx_map`, what it called from its `/metrics`, and
what QP holds from the sandbox, which also plays the payer (the fixtures are in conftest.py). QP's
faults and the refusals before QP are tested in test_qp_registration.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from pm_shared.messages import PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.streams.names import GROUP_ADAPTER_QP
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Proc

pytestmark = pytest.mark.slow

HINTS_KEY = "{pm:psp:qp:hints:0}"
AMOUNT = 150_000  # 1 500.00 RUB in kopecks: the jobs' amount by default

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


async def settle(seconds: float = 0.8) -> None:
    """Give the adapter time to do what it must not do (a second result, a registration)."""
    await asyncio.sleep(seconds)


# --- the payer decides -----------------------------------------------------------------------------


async def test_a_registered_qr_is_pending_with_its_link_then_the_payment_succeeds_once(
    stack: Start,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    qr_of_order: QrOfOrder,
    payer: Payer,
    tx_row: TxRow,
    registrations: Registrations,
) -> None:
    url, adapter = await stack()
    sent = job()
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    at_qp = await qr_of_order(url, sent.idempotency_key)
    assert at_qp is not None and (at_qp["qr_id"], at_qp["payload"], at_qp["amount"], at_qp["status"]) == (
        qr_id,
        pending.payment_link,
        AMOUNT,
        "NEW",
    )
    assert at_qp["purpose"] == "top-up"
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["psp_transfer_id"], row["psp_status"], row["status"]) == (
        "confirm_sent",
        qr_id,
        "NEW",
        None,
    )
    assert row["confirm_sent_at"] is not None

    await payer(url, qr_id, "pay")
    results = await wait_results(sent, final=1)
    await settle()
    results = await results_of(sent.message_id)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED"]  # exactly one final result
    done = results[1]
    paid = await qr_of_order(url, sent.idempotency_key)
    assert paid is not None and paid["status"] == "ACCEPTED"
    assert (done.psp_reference, done.failure_code, done.detail) == (
        qr_id,
        None,
        f"transaction {paid['transaction_id']}",
    )
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"], row["trans_ref"]) == (
        "final",
        "SUCCEEDED",
        "ACCEPTED",
        paid["transaction_id"],
    )
    assert row["result_message_id"] == done.message_id
    assert await registrations(adapter) == 1


@pytest.mark.parametrize(("action", "code"), [("reject", "REJECTED"), ("expire", "EXPIRED")])
async def test_a_rejected_or_expired_qr_fails_with_that_code(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    payer: Payer,
    tx_row: TxRow,
    action: str,
    code: str,
) -> None:
    url, _ = await stack()
    sent = job()
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(url, qr_id, action)
    results = await wait_results(sent, final=1)
    assert [(r.status, r.failure_code, r.psp_reference) for r in results] == [
        ("PENDING", None, qr_id),
        ("FAILED", code, qr_id),
    ]
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["failure_code"], row["psp_status"]) == (
        "final",
        "FAILED",
        code,
        code,
    )


async def test_a_qr_born_expired_fails_expired_without_a_pending_result(
    stack: Start, job: NewJob, publish: Publish, wait_results: WaitResults, tx_row: TxRow
) -> None:
    await stack()
    sent = job(purpose="top-up sandbox-fault=expire")
    await publish(sent)
    (result,) = await wait_results(sent, final=1)
    assert (result.status, result.failure_code, result.payment_link) == ("FAILED", "EXPIRED", None)
    assert (await tx_row(sent.idempotency_key))["phase"] == "final"


# --- redeliveries ----------------------------------------------------------------------------------


async def test_a_job_redelivered_after_its_final_result_republishes_the_identical_result(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    payer: Payer,
    tx_row: TxRow,
    registrations: Registrations,
) -> None:
    url, adapter = await stack()
    sent = job()
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    assert pending.psp_reference is not None
    await payer(url, pending.psp_reference, "pay")
    _, first = await wait_results(sent, final=1)
    await publish(sent)  # the same job again: same message id, same idempotency key
    results = await wait_results(sent, final=2)
    assert [r.status for r in results] == ["PENDING", "SUCCEEDED", "SUCCEEDED"]
    assert results[2] == first  # same message id, same produced_at, same reference
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["attempts"]) == ("final", 2)
    assert await registrations(adapter) == 1


async def test_a_job_redelivered_while_pending_republishes_pending_with_the_same_link_and_no_new_qr(
    stack: Start,
    job: NewJob,
    publish: Publish,
    wait_results: WaitResults,
    tx_row: TxRow,
    calls: Calls,
    registrations: Registrations,
) -> None:
    _, adapter = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(sent)
    (first,) = await wait_results(sent, pending=1)
    await publish(sent)
    results = await wait_results(sent, pending=2)
    assert [r.status for r in results] == ["PENDING", "PENDING"]
    again = results[1]
    assert (again.payment_link, again.psp_reference, again.expires_at) == (
        first.payment_link,
        first.psp_reference,
        first.expires_at,
    )
    assert await registrations(adapter) == 1  # the redelivery read the QR; it registered nothing
    assert await calls(adapter, "get", "ok") == 1
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["attempts"], row["psp_transfer_id"]) == ("confirm_sent", 2, first.psp_reference)


# --- hints -----------------------------------------------------------------------------------------


async def test_a_hint_finishes_a_paid_qr_without_waiting_for_the_sweep(
    stack: Start,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    payer: Payer,
    tx_row: TxRow,
) -> None:
    url, _ = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    await payer(url, qr_id, "pay")
    await settle()
    assert [r.status for r in await results_of(sent.message_id)] == ["PENDING"]  # no sweep ran
    await publish(hint(sent, qr_id=qr_id, claimed="ACCEPTED", key=None))  # found by QR id alone
    results = await wait_results(sent, final=1, timeout=5)
    assert [(r.status, r.psp_reference) for r in results] == [("PENDING", qr_id), ("SUCCEEDED", qr_id)]
    assert (await tx_row(sent.idempotency_key))["status"] == "SUCCEEDED"


async def test_a_forged_hint_changes_nothing_and_an_unknown_one_is_acknowledged(
    stack: Start,
    redis: Redis,
    job: NewJob,
    publish: Publish,
    results_of: ResultsOf,
    wait_results: WaitResults,
    assert_pending: AssertPending,
    qr_of_order: QrOfOrder,
    tx_row: TxRow,
) -> None:
    url, _ = await stack(PM_ADAPTER_QP_SWEEP_INTERVAL_MS="60000")
    sent = job()
    await publish(sent)
    (pending,) = await wait_results(sent, pending=1)
    qr_id = assert_pending(pending, sent)
    stranger = job()
    await publish(hint(stranger, qr_id="AD" + "X" * 30, claimed="ACCEPTED"))  # no such attempt
    await publish(hint(sent, qr_id=qr_id, claimed="ACCEPTED"))  # a lie: the QR is unpaid

    async def read_by_the_hint() -> bool:
        return int((await tx_row(sent.idempotency_key))["polls"]) >= 1

    await eventually(read_by_the_hint, timeout=5, what="the adapter read the QR after the hint")
    await settle()
    assert [r.status for r in await results_of(sent.message_id)] == ["PENDING"]
    row = await tx_row(sent.idempotency_key)
    assert (row["phase"], row["status"], row["psp_status"]) == ("confirm_sent", None, "NEW")
    at_qp = await qr_of_order(url, sent.idempotency_key)
    assert at_qp is not None and at_qp["status"] == "NEW"
    pending_hints = await redis.xpending(HINTS_KEY, GROUP_ADAPTER_QP)
    assert pending_hints["pending"] == 0  # both acknowledged
    assert int(await redis.xlen(f"{HINTS_KEY}:dlq")) == 0
