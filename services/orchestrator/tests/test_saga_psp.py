"""The saga's PSP steps in this process, against real PostgreSQL (a database of this module's own) and
real Redis: what PSP results do to PROMPTPAY_WITHDRAWAL and SBP_TOPUP intents, what the resume
sweep does with intents a PSP adapter holds, and the DLQ review (docs/psp.md; `World`: see
conftest.py).

Ledger and PSP results are built here; the adapters and the ledger-writer are tested on their own,
and tests/test_psp.py runs the whole fleet against the PSP sandboxes.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import pytest
import tigerbeetle as tb

from pm_orchestrator import failures
from pm_orchestrator.dead_letters import DeadLetters
from pm_orchestrator.resume import Resumer
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, VALIDATED
from pm_shared.intents import legs
from pm_shared.ledger import chart
from pm_shared.messages import Party, PspJob, PspResult, new_message_id, now, psp_key
from pm_shared.streams import dlq as dlqs
from pm_shared.streams.names import IPPS_JOBS, PSP_RESULTS, QP_JOBS
from pm_shared.streams.publisher import PAYLOAD_FIELD

if TYPE_CHECKING:
    from .conftest import World

_pending = int(tb.TransferFlags.PENDING)


async def _authorized_withdrawal(world: World, amount: int = 10_000) -> tuple[str, PspJob]:
    """A withdrawal taken in and authorized: it awaits `psp_payout`, whose job is returned."""
    _, intent_id = await world.withdrawal(amount)
    await world.take_in(intent_id)
    [authorize] = await world.commands(intent_id)
    assert authorize.step == "authorize"
    await world.ledger_answers(authorize)
    [job] = await world.jobs(intent_id, IPPS_JOBS.name)
    return intent_id, job


# -- PROMPTPAY_WITHDRAWAL -------------------------------------------------------------------------


async def test_a_withdrawal_is_authorized_paid_out_then_settled(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world, 12_345)
    row = await world.row(intent_id)
    assert (row.state, row.step) == (AUTHORIZED, "psp_payout")
    # The job: the payee exactly as the API took it, the principal, a key stable across resends.
    assert (job.psp, job.action, job.amount, job.currency) == ("ipps", "payout", 12_345, "THB")
    assert job.target == Party(kind="promptpay", proxy_type="MSISDN", proxy_value="0812345678")
    assert job.idempotency_key == psp_key(intent_id, "psp_payout") == f"{intent_id}.psp_payout"
    assert job.message_id == f"{intent_id}:psp_payout"

    assert await world.psp_answers(job, "SUCCEEDED", psp_reference="T-1") == {}
    row = await world.row(intent_id)
    assert (row.state, row.step) == (AUTHORIZED, "settle")
    settle = [c for c in await world.commands(intent_id) if c.step == "settle"]
    assert len(settle) == 1
    assert all(t.pending_id for t in settle[0].transfers)  # posts what the authorization holds

    # The same result again (a redelivery) changes nothing and sends nothing more.
    assert await world.psp_answers(job, "SUCCEEDED", psp_reference="T-1") == {}
    assert len([c for c in await world.commands(intent_id) if c.step == "settle"]) == 1

    await world.ledger_answers(settle[0])
    assert (await world.row(intent_id)).state == SETTLED
    assert await world.moves(intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    assert "ipps payout succeeded (reference T-1); settle sent" in (await world.timeline(intent_id))[2][2]


async def test_a_refused_payout_voids_the_authorization_and_fails(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    assert await world.psp_answers(job, "FAILED", failure_code="PROXY_NOT_FOUND") == {}
    row = await world.row(intent_id)
    assert row.state == FAILED
    assert await world.failure_code(intent_id) == failures.PAYEE_INVALID
    [void] = [c for c in await world.commands(intent_id) if c.step == "void"]
    assert void.transfers and all(
        t.flags == int(tb.TransferFlags.VOID_PENDING_TRANSFER) for t in void.transfers
    )
    assert "ipps: PROXY_NOT_FOUND" in (await world.timeline(intent_id))[-1][2]
    # Later results for the same job change nothing.
    assert await world.psp_answers(job, "SUCCEEDED") == {}
    assert (await world.row(intent_id)).state == FAILED
    assert not [c for c in await world.commands(intent_id) if c.step == "settle"]


@pytest.mark.parametrize(
    ("psp_code", "code"),
    [
        ("INSUFFICIENT_LIQUIDITY", failures.PSP_DECLINED),
        ("JOB_DEAD_LETTERED", failures.PSP_UNREACHABLE),
        ("REJECTED", failures.PAYMENT_REJECTED),
        ("EXPIRED", failures.PAYMENT_EXPIRED),
        (None, failures.PSP_DECLINED),
    ],
)
def test_psp_codes_map_to_failure_codes(psp_code: str | None, code: str) -> None:
    result = PspResult(
        intent_id="i", message_id="m", produced_at=now(), psp="ipps", job_id="j", status="FAILED",
        failure_code=psp_code,
    )  # fmt: skip
    failure = failures.from_psp(result)
    assert failure.code == code and failure.code in failures.CODES
    assert failure.reason.startswith(f"ipps: {psp_code or 'UNSPECIFIED'}")


async def test_an_unknown_outcome_keeps_the_intent_waiting_on_the_record(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    before = await world.row(intent_id)
    assert await world.psp_answers(job, "UNKNOWN", psp_reference="T-9") == {}
    row = await world.row(intent_id)
    assert (row.state, row.step) == (AUTHORIZED, "psp_payout")
    assert row.updated_at > before.updated_at
    assert "outcome not known yet" in (await world.timeline(intent_id))[-1][2]
    assert not [c for c in await world.commands(intent_id) if c.step in ("settle", "void")]
    # The final answer still applies.
    await world.psp_answers(job, "SUCCEEDED")
    assert (await world.row(intent_id)).step == "settle"


async def test_a_result_from_another_psp_or_an_unknown_status_changes_nothing(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    other = PspJob(**{**msgspec.structs.asdict(job), "psp": "qp"})
    assert await world.psp_answers(other, "SUCCEEDED") == {}
    assert (await world.row(intent_id)).step == "psp_payout"
    failed = await world.psp_answers(job, "MAYBE")
    assert [type(e).__name__ for e in failed.values()] == ["UnknownPspStatusError"]
    assert (await world.row(intent_id)).step == "psp_payout"


async def test_a_settlement_refused_after_the_payout_raises_an_alert(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    await world.psp_answers(job, "SUCCEEDED")
    [settle] = [c for c in await world.commands(intent_id) if c.step == "settle"]
    await world.ledger_answers(settle, ["PENDING_TRANSFER_EXPIRED"])
    assert await world.failure_code(intent_id) == failures.AUTHORIZATION_EXPIRED
    [alert] = [a for a in await world.alerts("ledger_refused_after_psp") if a["intent_id"] == intent_id]
    assert alert["resolved_at"] is None
    assert "AUTHORIZATION_EXPIRED" in alert["detail"]


async def test_a_refused_authorization_raises_no_alert(world: World) -> None:
    _, intent_id = await world.withdrawal()
    await world.take_in(intent_id)
    [authorize] = await world.commands(intent_id)
    await world.ledger_answers(authorize, ["EXCEEDS_CREDITS"])
    assert await world.failure_code(intent_id) == failures.INSUFFICIENT_FUNDS
    assert not [a for a in await world.alerts("ledger_refused_after_psp") if a["intent_id"] == intent_id]
    assert not await world.jobs(intent_id, IPPS_JOBS.name)


# -- SBP_TOPUP ------------------------------------------------------------------------------------


async def test_a_topup_shows_the_qr_then_credits_the_wallet_outright(world: World) -> None:
    payee, intent_id = await world.topup(50_000)
    await world.take_in(intent_id)
    row = await world.row(intent_id)
    assert (row.state, row.step) == (VALIDATED, "psp_collect")
    assert not await world.commands(intent_id)  # nothing is held: the money comes through QP
    [job] = await world.jobs(intent_id, QP_JOBS.name)
    assert (job.psp, job.action, job.amount, job.currency) == ("qp", "collect", 50_000, "RUB")
    assert job.target == Party(kind="user", id=payee)
    assert job.idempotency_key == f"{intent_id}.psp_collect"

    link = "https://qr.nspk.ru/AD100004BAL7227F9BNP6KNE007J9B3K?type=02&bank=100000000111&sum=50000&cur=RUB&crc=AB75"
    expires = datetime.now(UTC) + timedelta(minutes=10)
    pending = {
        "payment_link": link,
        "expires_at": expires,
        "psp_reference": "AD100004BAL7227F9BNP6KNE007J9B3K",
    }
    assert await world.psp_answers(job, "PENDING", **pending) == {}
    row = await world.row(intent_id)
    assert (row.state, row.step) == (VALIDATED, "psp_collect")
    assert row.payment == {
        "kind": "qp_qr",
        "link": link,
        "expiresAt": expires.isoformat(),
        "pspReference": "AD100004BAL7227F9BNP6KNE007J9B3K",
    }
    events = len(await world.timeline(intent_id))
    assert await world.psp_answers(job, "PENDING", **pending) == {}  # a redelivered job's PENDING
    assert len(await world.timeline(intent_id)) == events

    await world.psp_answers(job, "SUCCEEDED", psp_reference="AD100004BAL7227F9BNP6KNE007J9B3K")
    [settle] = await world.commands(intent_id)
    assert settle.step == "settle"
    assert [(t.amount, t.flags & _pending, t.pending_id) for t in settle.transfers] == [(50_000, 0, 0)]
    assert settle.transfers[0].credit_account_id == legs.wallet(payee, "RUB").id
    assert settle.transfers[0].debit_account_id == legs.operator(chart.Code.QP_CLEARING, "RUB").id
    await world.ledger_answers(settle)
    row = await world.row(intent_id)
    assert row.state == SETTLED
    assert (await world.moves(intent_id))[-1] == (VALIDATED, SETTLED)
    history = await world.pool.fetch(
        "SELECT owner_id, direction, amount FROM pm.tx_history WHERE intent_id = $1", uuid.UUID(intent_id)
    )
    assert [(h["owner_id"], h["direction"], h["amount"]) for h in history] == [(payee, "in", 50_000)]


async def test_an_expired_qr_fails_the_topup_with_nothing_to_void(world: World) -> None:
    _, intent_id = await world.topup()
    await world.take_in(intent_id)
    [job] = await world.jobs(intent_id, QP_JOBS.name)
    await world.psp_answers(job, "FAILED", failure_code="EXPIRED")
    assert await world.failure_code(intent_id) == failures.PAYMENT_EXPIRED
    assert not await world.commands(intent_id)


# -- resume sweep ---------------------------------------------------------------------------------


async def test_the_sweep_resends_a_psp_job_only_when_no_attempt_is_under_way(world: World) -> None:
    held, _ = await _authorized_withdrawal(world)
    lost, _ = await _authorized_withdrawal(world)
    finished, _ = await _authorized_withdrawal(world)
    for intent_id, phase in ((held, "confirm_sent"), (finished, "final")):
        await world.pool.execute(
            """INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount,
                                          currency, phase, status)
               VALUES ($1, 'ipps', 'payout', $2, 'j', 10000, 'THB', $3, $4)""",
            held if phase == "confirm_sent" else finished,
            psp_key(intent_id, "psp_payout"),
            phase,
            "SUCCEEDED" if phase == "final" else None,
        )
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=60, interval_s=60)
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    assert len(await world.jobs(held, IPPS_JOBS.name)) == 1  # the adapter has it: not resent
    for intent_id in (lost, finished):
        jobs = await world.jobs(intent_id, IPPS_JOBS.name)
        assert len(jobs) == 2
        assert jobs[1].message_id.startswith(f"{intent_id}:psp_payout:resend:")
        assert jobs[1].idempotency_key == jobs[0].idempotency_key


# -- dead letters ----------------------------------------------------------------------------------


async def _dead_letter(world: World, stream: str, message: Any, error: str = "boom") -> None:
    key = f"{{{stream}:0}}"
    group = {IPPS_JOBS.name: IPPS_JOBS.groups[0], PSP_RESULTS.name: PSP_RESULTS.groups[0]}[stream]
    added = await world.redis.xadd(key, {PAYLOAD_FIELD: msgspec.json.encode(message)})
    entry_id = added.decode() if isinstance(added, bytes) else str(added)
    await dlqs.move(
        world.redis,
        key,
        group,
        "c",
        [
            dlqs.DeadLetter(
                entry_id=entry_id,
                payload=msgspec.json.encode(message),
                reason="max_deliveries",
                error=error,
                attempts=3,
            )
        ],
    )


def _review(world: World) -> DeadLetters:
    return DeadLetters(world.pool, world.redis, world.saga.publisher, partitions=1, interval_s=60)


async def test_a_dead_job_that_never_reached_the_psp_fails_its_intent(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    # The adapter recorded and inquired, then died at each delivery: no confirm was ever sent.
    await world.pool.execute(
        """INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount,
                                      currency, phase)
           VALUES ($1, 'ipps', 'payout', $2, $3, $4, 'THB', 'inquired')""",
        intent_id, job.idempotency_key, job.message_id, job.amount,
    )  # fmt: skip
    await _dead_letter(world, IPPS_JOBS.name, job)
    review = _review(world)
    assert await review.review_once() == 1
    row = await world.pool.fetchrow(
        "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", job.idempotency_key
    )
    assert row is not None
    assert (row["phase"], row["status"], row["failure_code"]) == ("final", "FAILED", "JOB_DEAD_LETTERED")
    [result] = await world.results(intent_id)
    assert (result.status, result.failure_code, result.job_id) == (
        "FAILED",
        "JOB_DEAD_LETTERED",
        job.message_id,
    )
    # The saga applies it like any refusal: void and FAILED.
    assert await world.saga.on_psp_results([world.delivery("{pm:psp:results:0}", result)]) == {}
    assert await world.failure_code(intent_id) == failures.PSP_UNREACHABLE
    assert [c.step for c in await world.commands(intent_id)][-1] == "void"
    # Looked at once per process; a second review (a restart) publishes the same result again.
    assert await review.review_once() == 0
    assert await _review(world).review_once() == 1
    results = await world.results(intent_id)
    assert len(results) == 2 and results[1].message_id == result.message_id


async def test_a_dead_job_with_no_attempt_recorded_is_fenced_too(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    await _dead_letter(world, IPPS_JOBS.name, job)
    await _review(world).review_once()
    phase = await world.pool.fetchval(
        "SELECT phase FROM pm.psp_tx_map WHERE idempotency_key = $1", job.idempotency_key
    )
    assert phase == "final"
    assert [r.failure_code for r in await world.results(intent_id)] == ["JOB_DEAD_LETTERED"]


async def test_a_dead_job_that_may_have_reached_the_psp_is_an_alert_not_a_failure(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    await world.pool.execute(
        """INSERT INTO pm.psp_tx_map (intent_id, psp, action, idempotency_key, job_message_id, amount,
                                      currency, phase)
           VALUES ($1, 'ipps', 'payout', $2, $3, $4, 'THB', 'confirm_sent')""",
        intent_id, job.idempotency_key, job.message_id, job.amount,
    )  # fmt: skip
    await _dead_letter(world, IPPS_JOBS.name, job)
    await _review(world).review_once()
    await _review(world).review_once()  # twice: still one alert
    assert (
        await world.pool.fetchval(
            "SELECT phase FROM pm.psp_tx_map WHERE idempotency_key = $1", job.idempotency_key
        )
        == "confirm_sent"
    )
    assert not await world.results(intent_id)
    alerts = [a for a in await world.alerts("psp_job_dead_lettered") if a["intent_id"] == intent_id]
    assert len(alerts) == 1 and alerts[0]["stream"] == "{pm:psp:ipps:jobs:0}:dlq"
    assert (await world.row(intent_id)).state == AUTHORIZED


async def test_a_dead_result_raises_one_alert(world: World) -> None:
    intent_id, job = await _authorized_withdrawal(world)
    result = PspResult(
        intent_id=intent_id, message_id=new_message_id(), produced_at=now(), psp="ipps",
        job_id=job.message_id, status="SUCCEEDED", psp_reference="T-7",
    )  # fmt: skip
    await _dead_letter(world, PSP_RESULTS.name, result, error="database down")
    await _review(world).review_once()
    await _review(world).review_once()
    alerts = [a for a in await world.alerts("psp_result_dead_lettered") if a["intent_id"] == intent_id]
    assert len(alerts) == 1
    detail = msgspec.json.decode(alerts[0]["detail"])
    assert detail["status"] == "SUCCEEDED" and detail["error"] == "database down"
