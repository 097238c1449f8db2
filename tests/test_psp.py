"""PromptPay withdrawals end to end (SBP top-ups: tests/test_psp_sbp.py): the whole fleet as real processes —
gateway, orchestrator, ledger-writer, reconciler, adapter-ipps, adapter-qp — against both PSP
sandboxes as real processes over HTTP, the sandboxes' callbacks going to the gateway.

Faults are asked for the way a PM intent can: the sandboxes' magic amounts and proxy values (an
intent carries no sandbox headers). Every test checks the intent's terminal state, what the embedded
ledger holds for it, and what the PSP did (the sandbox's own record, found by our idempotency key).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_client import api as http_api
from pm_client.client import PMClient, PMError
from pm_shared import thaiqr
from pm_shared.fleet import IPPS_SANDBOX
from pm_shared.messages import PspHint, psp_key
from pm_shared.streams.connection import connect
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing import fixtures
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import sample_value
from pm_tools.testing.psp import (
    HANG_S,
    IPPS_CALLBACK_SECRET,
    IPPS_HINTS_KEY,
    MOBILE,
    Psp,
    ledger_legs,
    psp_fleet,
    states,
    user,
)
from pm_tools.testing.saga import (
    admin_post,
    fetch,
    fund,
    open_wallet,
    run_intent,
    settle_rules,
    thb_balance,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Psp]:
    with psp_fleet(Path(tmp_path_factory.mktemp("psp"))) as running:
        yield running


@pytest.fixture
async def admin(psp: Psp) -> AsyncIterator[PMClient]:
    async with psp.saga.client(psp.saga.admin) as client:
        yield client


@pytest.fixture
async def http(psp: Psp) -> AsyncIterator[httpx.AsyncClient]:
    async with psp.saga.http(psp.saga.admin) as client:
        yield client


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = connect(fixtures.test_redis_url())
    yield client
    await client.aclose()


_user = user


def withdrawal(payer: str, amount: int, to: http_api.Party) -> http_api.CreateIntent:
    return http_api.CreateIntent(
        type="PROMPTPAY_WITHDRAWAL", amount=amount, currency="THB", from_=http_api.UserParty(id=payer), to=to
    )


def proxy(value: str = MOBILE, proxy_type: str = "MSISDN") -> http_api.PromptPayParty:
    return http_api.PromptPayParty(proxy_type=proxy_type, proxy_value=value)  # type: ignore[arg-type]


async def funded(admin: PMClient, test: str, amount: int) -> str:
    payer = _user(test)
    await open_wallet(admin, payer)
    await fund(admin, payer, amount)
    return payer


async def psp_row(psp: Psp, intent_id: str, step: str = "psp_payout") -> dict[str, Any]:
    [row] = await fetch(
        psp.saga.database_url,
        "SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1",
        psp_key(intent_id, step),
    )
    return row


# -- PROMPTPAY_WITHDRAWAL ------------------------------------------------------------------------------


async def test_a_withdrawal_with_a_fee_is_held_paid_out_once_and_settled(
    psp: Psp, admin: PMClient, http: httpx.AsyncClient
) -> None:
    payer = _user("w1")
    await admin_post(
        http,
        "/v1/admin/fee-rules",
        http_api.FeeRuleIn(
            rule_id=f"{payer}-fee",
            operation_type="PROMPTPAY_WITHDRAWAL",
            condition=f'intent.source.id == "{payer}"',
            amount="500",
            timing="PRE",
            max_fee=1_000,
        ),
    )
    rules_at = time.monotonic()
    await open_wallet(admin, payer)
    await fund(admin, payer, 100_000)
    await settle_rules(rules_at)
    paid_before = await psp.ipps_paid()

    intent = await run_intent(admin, withdrawal(payer, 10_000, proxy()), timeout=30)

    assert (intent.status, intent.failure_code) == ("SETTLED", None), psp.saga.about(intent.id)
    assert [f.amount for f in intent.fees] == [500]
    assert states(intent) == ["CREATED", "VALIDATED", "AUTHORIZED", "AUTHORIZED", "SETTLED"]
    balance = await thb_balance(admin, payer)
    assert (balance.posted, balance.pending, balance.available) == (89_500, 0, 89_500)
    assert await ledger_legs(psp, intent.id) == {"pending": 10_000, "post": 10_000}
    transfer = await psp.ipps_transfer(intent.id)
    assert transfer is not None and (transfer["status"], transfer["amount"]) == ("SUCCESS", 10_000)
    assert await psp.ipps_paid() - paid_before == 10_000
    row = await psp_row(psp, intent.id)
    assert (row["phase"], row["status"]) == ("final", "SUCCEEDED")


# Magic amounts and proxy values of the IPPS sandbox (its faults module), and what PM must make of them.
FAULTS = [
    # name, amount, proxy value, terminal state, failure code, paid out
    ("insufficient_liquidity", 40_001, MOBILE, "FAILED", "PSP_DECLINED", False),
    ("receiver_rejected", 40_002, MOBILE, "FAILED", "PAYEE_INVALID", False),
    ("proxy_not_found_at_inquiry", 10_000, "0812345404", "FAILED", "PAYEE_INVALID", False),
    ("account_closed_at_inquiry", 10_000, "0812345410", "FAILED", "PAYEE_INVALID", False),
    ("server_error_at_every_confirm", 50_003, MOBILE, "FAILED", "PSP_UNREACHABLE", False),
    ("timeout_after_commit", 50_004, MOBILE, "SETTLED", None, True),
    ("server_error_after_commit", 50_000, MOBILE, "SETTLED", None, True),
    ("unknown_three_times_then_success", 20_003, MOBILE, "SETTLED", None, True),
    ("pending_then_success", 20_002, MOBILE, "SETTLED", None, True),
    ("duplicate_callbacks", 20_004, MOBILE, "SETTLED", None, True),
    ("out_of_order_callbacks", 20_005, MOBILE, "SETTLED", None, True),
]


@pytest.mark.parametrize(
    ("name", "amount", "value", "state", "code", "paid"), FAULTS, ids=[f[0] for f in FAULTS]
)
async def test_every_ipps_fault_ends_in_its_state_with_its_ledger_effect(
    psp: Psp, admin: PMClient, name: str, amount: int, value: str, state: str, code: str | None, paid: bool
) -> None:
    payer = await funded(admin, name[:10], 100_000)
    paid_before = await psp.ipps_paid()
    intent = await run_intent(admin, withdrawal(payer, amount, proxy(value)), timeout=45)

    assert (intent.status, intent.failure_code) == (state, code), psp.saga.about(intent.id)

    async def released() -> bool:  # a FAILED intent's hold is voided by a command sent with the move
        return (await thb_balance(admin, payer)).pending == 0

    await eventually(released, timeout=10, what=f"nothing of {payer} still held")
    balance = await thb_balance(admin, payer)
    legs = await ledger_legs(psp, intent.id)
    transfer = await psp.ipps_transfer(intent.id)
    if paid:
        assert (balance.posted, balance.pending) == (100_000 - amount, 0)
        assert legs == {"pending": amount, "post": amount}
        assert transfer is not None and transfer["status"] == "SUCCESS"
        assert await psp.ipps_paid() - paid_before == amount  # once, whatever the retries
    else:
        assert (balance.posted, balance.pending) == (100_000, 0)  # held, then given back
        assert "post" not in legs
        assert legs.get("void") == amount or "pending" not in legs
        assert transfer is None or transfer["status"] == "FAILED"
        assert await psp.ipps_paid() == paid_before


def _hints(entries: Any, key: str) -> list[PspHint]:
    found = [msgspec.json.decode(fields[PAYLOAD_FIELD], type=PspHint) for _, fields in entries]
    return [h for h in found if h.idempotency_key == key]


async def test_duplicate_callbacks_reach_the_adapter_once_and_reordered_ones_change_nothing(
    psp: Psp, admin: PMClient, redis: Redis
) -> None:
    payer = await funded(admin, "cb", 100_000)
    duplicated = await run_intent(admin, withdrawal(payer, 20_004, proxy()), timeout=30)
    reordered = await run_intent(admin, withdrawal(payer, 20_005, proxy()), timeout=30)
    assert [duplicated.status, reordered.status] == ["SETTLED", "SETTLED"]

    sent = [await psp.ipps_transfer(i.id) for i in (duplicated, reordered)]
    transfer_ids = {t["transfer_id"] for t in sent if t is not None}

    async def delivered() -> bool:
        async with httpx.AsyncClient(base_url=psp.ipps_url, timeout=5.0) as client:
            deliveries = (await client.get("/_sim/callbacks")).json()
        ours = [d for d in deliveries if d["transfer_id"] in transfer_ids and d["status_code"] == 200]
        return len(ours) >= 4  # two copies of one event, and an event followed by a stale one

    await eventually(delivered, timeout=15, what="the sandbox's callbacks delivered")
    await asyncio.sleep(1.0)  # the last redeliveries
    entries = await redis.xrange(IPPS_HINTS_KEY) or []
    # Two deliveries of one event: one hint. A stale `pending` after `succeeded`: passed on in
    # arrival order (the adapter reads the status itself; the intent stayed SETTLED).
    dup_hints = _hints(entries, psp_key(duplicated.id, "psp_payout"))
    assert [h.claimed_status for h in dup_hints] == ["SUCCESS"], dup_hints
    late_hints = _hints(entries, psp_key(reordered.id, "psp_payout"))
    assert [h.claimed_status for h in late_hints] == ["SUCCESS", "PENDING"], late_hints
    async with httpx.AsyncClient(timeout=5.0) as client:
        metrics = (await client.get(psp.saga.gateway.url("/metrics"))).text
    assert (sample_value(metrics, "pm_webhook_callbacks_total", psp="ipps", outcome="duplicate") or 0) >= 1
    for intent in (duplicated, reordered):
        again = await admin.get_intent(intent.id)
        assert (again.status, len(again.timeline)) == ("SETTLED", len(intent.timeline))
    assert (await thb_balance(admin, payer)).posted == 100_000 - 20_004 - 20_005


def _ipps_callback(transfer: dict[str, Any], event: str, secret: str) -> tuple[bytes, dict[str, str]]:
    body = msgspec.json.encode({"event": event, "sequence": 9, "transfer": transfer})
    t = int(time.time())
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, {"X-IPPS-Signature": f"t={t},v1={mac}", "Content-Type": "application/json"}


async def test_forged_and_off_allowlist_callbacks_are_refused_and_a_lying_one_changes_nothing(
    psp: Psp, admin: PMClient, redis: Redis
) -> None:
    payer = await funded(admin, "forge", 50_000)
    intent = await run_intent(admin, withdrawal(payer, 10_000, proxy()), timeout=30)
    assert intent.status == "SETTLED"
    transfer = await psp.ipps_transfer(intent.id)
    assert transfer is not None
    lie = {**transfer, "status": "FAILED", "failure_code": "RECEIVER_REJECTED", "trans_ref": None}
    hints_before = len(await redis.xrange(IPPS_HINTS_KEY) or [])
    webhook = psp.saga.gateway.url("/v1/webhooks/ipps")

    async with httpx.AsyncClient(timeout=5.0) as client:
        body, headers = _ipps_callback(lie, "transfer.failed", "not-the-secret")
        forged = await client.post(webhook, content=body, headers=headers)
        assert forged.status_code == 401 and forged.json()["code"] == "invalid_signature"

        # The same callback, rightly signed, from an address the gateway does not accept callbacks from.
        strict = psp.fleet.start("gateway", env={"PM_GATEWAY_IPPS_CALLBACK_ALLOWLIST": "10.99.0.0/16"})
        await strict.wait_ready()
        body, headers = _ipps_callback(lie, "transfer.failed", IPPS_CALLBACK_SECRET)
        off_list = await client.post(strict.url("/v1/webhooks/ipps"), content=body, headers=headers)
        assert off_list.status_code == 403 and off_list.json()["code"] == "forbidden_source"
        strict.popen.terminate()
        assert len(await redis.xrange(IPPS_HINTS_KEY) or []) == hints_before

        # Rightly signed from an allowed source but false: passed on as a hint, and the adapter,
        # which asks IPPS itself, finds the payout final and does nothing.
        lying = await client.post(webhook, content=body, headers=headers)
        assert lying.status_code == 200 and lying.json() == {"accepted": True, "duplicate": False}
    await eventually(
        lambda: _hint_count(redis, hints_before + 1), timeout=5, what="the lying callback passed on as a hint"
    )
    await asyncio.sleep(1.0)  # time for the adapter to act on it, were it to act
    again = await admin.get_intent(intent.id)
    assert (again.status, len(again.timeline)) == ("SETTLED", len(intent.timeline))
    assert (await thb_balance(admin, payer)).posted == 40_000
    assert (await psp_row(psp, intent.id))["status"] == "SUCCEEDED"


async def _hint_count(redis: Redis, wanted: int) -> bool:
    return len(await redis.xrange(IPPS_HINTS_KEY) or []) >= wanted


async def test_sigkill_of_the_adapter_between_confirm_and_result_pays_once(psp: Psp, admin: PMClient) -> None:
    payer = await funded(admin, "kill", 100_000)
    # A sandbox of its own that sends no callbacks (a callback would let the adapter finish through
    # its hint before it is killed), and an adapter that waits for the confirm's answer, which the
    # sandbox holds HANG_S after paying (fault `timeout`).
    quiet = psp.fleet.start(IPPS_SANDBOX.name, env={"PM_IPPS_SANDBOX_HANG_S": str(HANG_S)})
    quiet_url = quiet.url("")
    try:
        await quiet.wait_ready()
        psp.adapter_ipps.popen.kill()
        patient = psp.start_adapter_ipps(  # no sweep either: the confirm's answer is all it has
            PM_ADAPTER_IPPS_IPPS_URL=quiet_url,
            PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS="30000",
            PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS="600000",
        )
        await patient.wait_ready()
        created = await admin.create_intent(
            withdrawal(payer, 50_004, proxy()), idempotency_key=uuid.uuid4().hex
        )
        key = psp_key(created.id, "psp_payout")

        async def phase() -> str | None:
            rows = await fetch(
                psp.saga.database_url, "SELECT phase FROM pm.psp_tx_map WHERE idempotency_key = $1", key
            )
            return str(rows[0]["phase"]) if rows else None

        async def confirm_sent() -> bool:
            return await phase() == "confirm_sent"

        await eventually(confirm_sent, timeout=20, what="the confirm sent")
        await asyncio.sleep(1.0)  # well inside the HANG_S the sandbox holds its answer, after paying
        patient.popen.kill()
        assert await phase() == "confirm_sent"
        assert (await admin.get_intent(created.id)).status == "AUTHORIZED"
        async with httpx.AsyncClient(base_url=quiet_url, timeout=5.0) as http:
            assert (await http.get("/_sim/ledger")).json()["paid"] == 50_004  # IPPS has paid

        replacement = psp.start_adapter_ipps(PM_ADAPTER_IPPS_IPPS_URL=quiet_url)
        await replacement.wait_ready()
        intent = await admin.wait_intent(created.id, timeout=40)
        assert (intent.status, intent.failure_code) == ("SETTLED", None), psp.saga.about(created.id)
        async with httpx.AsyncClient(base_url=quiet_url, timeout=5.0) as http:
            ledger = (await http.get("/_sim/ledger")).json()
            found = (await http.get("/v1/transfers", params={"idempotency_key": key})).json()
        assert (ledger["paid"], ledger["transfers"]) == (50_004, 1)  # paid once
        assert found["status"] == "SUCCESS"
        assert (await thb_balance(admin, payer)).posted == 100_000 - 50_004
    finally:
        # Back to one adapter on the module's sandbox, whatever happened above.
        psp.adapter_ipps.popen.kill()
        psp.adapter_ipps.popen.wait(10)
        quiet.popen.kill()
        quiet.popen.wait(10)
        await psp.start_adapter_ipps().wait_ready()


async def test_a_scanned_tag29_qr_and_a_tag30_bill_qr_both_pay_out(psp: Psp, admin: PMClient) -> None:
    payer = await funded(admin, "qr", 100_000)
    credit = thaiqr.generate_credit_transfer("mobile", MOBILE, amount=12_300)
    bill = thaiqr.generate_bill_payment("010753600010286", "INV20261124", "CUST42", amount=15_000)
    static = thaiqr.generate_credit_transfer("mobile", "0899999999")  # no amount: the intent's is paid
    paid_before = await psp.ipps_paid()
    for payload, amount in ((credit, 12_300), (bill, 15_000), (static, 7_000)):
        intent = await run_intent(
            admin, withdrawal(payer, amount, http_api.ThaiQrParty(payload=payload)), timeout=30
        )
        assert (intent.status, intent.failure_code) == ("SETTLED", None), psp.saga.about(intent.id)
        transfer = await psp.ipps_transfer(intent.id)
        assert transfer is not None and (transfer["status"], transfer["amount"]) == ("SUCCESS", amount)
    assert await psp.ipps_paid() - paid_before == 12_300 + 15_000 + 7_000
    assert (await thb_balance(admin, payer)).posted == 100_000 - 34_300


async def test_a_qr_with_a_bad_crc_is_refused_at_intake_and_changes_nothing(
    psp: Psp, admin: PMClient
) -> None:
    payer = await funded(admin, "crc", 20_000)
    good = thaiqr.generate_credit_transfer("mobile", MOBILE, amount=5_000)
    bad = good[:-4] + ("0000" if not good.endswith("0000") else "FFFF")
    with pytest.raises(PMError) as refused:
        await admin.create_intent(
            withdrawal(payer, 5_000, http_api.ThaiQrParty(payload=bad)), idempotency_key="crc"
        )
    assert refused.value.status == 422 and refused.value.problem is not None
    assert refused.value.problem.code == "invalid_thai_qr"
    page = await admin.list_intents(limit=200)
    assert not [
        i for i in page.items if i.type == "PROMPTPAY_WITHDRAWAL" and i.from_ == http_api.UserParty(id=payer)
    ]
    assert (await thb_balance(admin, payer)).posted == 20_000
