"""SBP top-ups end to end: the whole fleet as real processes (gateway, orchestrator, ledger-writer,
reconciler, both adapters) against both PSP sandboxes over HTTP, the sandboxes' callbacks going to the
gateway (`pm_tools.testing.psp`). A top-up shows its QR and credits the wallet once paid; a rejected or
expired QR credits nothing; a top-up into a THB wallet collects the roubles of a quote locked when the
QR is issued and exchanges them when the payment arrives, even after the quote has expired."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pm_client import api as http_api
from pm_client import fx_api
from pm_client.client import PMClient, PMError
from pm_shared.ledger import chart, ids
from pm_tools.testing.psp import Psp, ledger_legs, psp_fleet, states, user
from pm_tools.testing.saga import accounts, fetch, open_wallet, posted, thb_balance, transfers

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def psp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Psp]:
    with psp_fleet(Path(tmp_path_factory.mktemp("sbp"))) as running:
        yield running


@pytest.fixture
async def admin(psp: Psp) -> AsyncIterator[PMClient]:
    async with psp.saga.client(psp.saga.admin) as client:
        yield client


async def rub_wallet(admin: PMClient, owner: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            await admin.open_wallet(owner, "RUB")
            return
        except PMError as exc:
            if exc.status != 202 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


async def rub_posted(admin: PMClient, owner: str) -> int:
    wallet = await admin.get_wallet(owner)
    return sum(b.posted for b in wallet.balances if b.currency == "RUB")


def topup(payee: str, amount: int) -> http_api.CreateIntent:
    return http_api.CreateIntent(
        type="SBP_TOPUP",
        amount=amount,
        currency="RUB",
        from_=http_api.SbpParty(),
        to=http_api.UserParty(id=payee),
    )


async def shown_qr(admin: PMClient, payee: str, amount: int, key: str | None = None) -> http_api.Intent:
    """A top-up created with `Prefer: wait`: it answers once the payer has a QR to pay."""
    intent = await admin.create_intent(topup(payee, amount), idempotency_key=key or uuid.uuid4().hex, wait=20)
    if intent.payment is None:  # created before the waiter could register: wait on the GET
        intent = await admin.get_intent(intent.id, wait=20)
    assert intent.status == "VALIDATED" and intent.payment is not None, intent
    return intent


async def test_an_sbp_topup_shows_its_qr_and_credits_the_wallet_once_paid(psp: Psp, admin: PMClient) -> None:
    payee = user("sbp")
    await rub_wallet(admin, payee)
    key = uuid.uuid4().hex
    intent = await shown_qr(admin, payee, 75_000, key)
    payment = intent.payment
    # The same POST again (its answer was lost): the QR is there, so `Prefer: wait` answers at once.
    asked = time.monotonic()
    again = await admin.create_intent(topup(payee, 75_000), idempotency_key=key, wait=20)
    assert (again.id, again.payment) == (intent.id, payment) and time.monotonic() - asked < 5
    assert payment is not None and payment.kind == "qp_qr"
    assert (
        payment.link.startswith("https://qr.nspk.ru/")
        and "sum=75000" in payment.link
        and "cur=RUB" in payment.link
    )
    assert payment.psp_reference and payment.psp_reference in payment.link
    assert await rub_posted(admin, payee) == 0

    paid = await psp.qp("POST", f"/v1/sandbox/qrs/{payment.psp_reference}/pay")
    assert paid.status_code == 200, paid.text
    done = await admin.wait_intent(intent.id, timeout=30)
    assert (done.status, done.failure_code) == ("SETTLED", None), psp.saga.about(intent.id)
    assert states(done)[-1] == "SETTLED" and "AUTHORIZED" not in states(done)
    assert await rub_posted(admin, payee) == 75_000
    legs = await ledger_legs(psp, intent.id)
    assert legs == {"pending": 75_000}  # made outright: the principal's own id, not pending, no post
    found = await transfers(psp.saga.database_url, [ids.transfer_id(intent.id, "principal")])
    assert all(t.flags == 0 for t in found.values())


@pytest.mark.parametrize(("action", "code"), [("reject", "PAYMENT_REJECTED"), ("expire", "PAYMENT_EXPIRED")])
async def test_a_rejected_or_expired_sbp_qr_fails_the_topup_and_credits_nothing(
    psp: Psp, admin: PMClient, action: str, code: str
) -> None:
    payee = user(action)
    await rub_wallet(admin, payee)
    intent = await shown_qr(admin, payee, 30_000)
    assert intent.payment is not None
    answered = await psp.qp("POST", f"/v1/sandbox/qrs/{intent.payment.psp_reference}/{action}")
    assert answered.status_code == 200, answered.text
    done = await admin.wait_intent(intent.id, timeout=30)
    assert (done.status, done.failure_code) == ("FAILED", code), psp.saga.about(intent.id)
    assert await rub_posted(admin, payee) == 0
    assert await ledger_legs(psp, intent.id) == {}


async def test_a_topup_into_a_thb_wallet_collects_roubles_and_exchanges_them_once_paid(
    psp: Psp, admin: PMClient
) -> None:
    payee = user("fx")
    await open_wallet(admin, payee)  # THB
    thb_liquidity = ids.account_id(
        "operator", "fx_liquidity", chart.ledger_of("THB"), int(chart.Code.FX_LIQUIDITY)
    )
    await admin.set_fx_rate(fx_api.SetRate(pair="THB/RUB", rate="2.5", spread_bps=100))
    funding = http_api.CreateIntent(
        type="ADJUSTMENT",
        amount=1_000_000,
        currency="THB",
        from_=http_api.OperatorParty(),
        to=http_api.LiquidityParty(),
    )
    await fund_liquidity(admin, funding)
    liquidity_before = posted((await accounts(psp.saga.database_url, [thb_liquidity]))[thb_liquidity])
    asked = http_api.CreateIntent(
        type="SBP_TOPUP",
        amount=40_000,
        currency="THB",
        from_=http_api.SbpParty(),
        to=http_api.UserParty(id=payee),
    )
    key = uuid.uuid4().hex
    intent = await admin.create_intent(asked, idempotency_key=key, wait=20)
    if intent.payment is None:
        intent = await admin.get_intent(intent.id, wait=20)
    # 400.00 THB at 2.5 RUB per THB: 1,000.00 RUB exchanged, and a 1 % spread of 10.00 RUB on top.
    assert (intent.amount, intent.currency) == (101_000, "RUB"), intent
    assert intent.exchange is not None and intent.payment is not None
    assert (intent.exchange.buy_currency, intent.exchange.buy_amount) == ("THB", 40_000)
    assert (intent.exchange.principal, intent.exchange.spread) == (100_000, 1_000)
    assert "sum=101000" in intent.payment.link and "cur=RUB" in intent.payment.link
    # The same request again finds the same intent (its hash is the request's, in THB).
    again = await admin.create_intent(asked, idempotency_key=key)
    assert again.id == intent.id
    # A payer may take longer than the quote's TTL (60 s) to pay: the QR shown is honoured anyway. The
    # quote's time is moved on rather than waited out.
    moved = await fetch(
        psp.saga.database_url,
        "UPDATE pm.fx_quote SET expires_at = now() - interval '1 second' WHERE id = $1 RETURNING id",
        uuid.UUID(intent.exchange.quote_id),
    )
    assert len(moved) == 1
    shown = await admin.get_fx_quote(intent.exchange.quote_id)
    assert shown.expires_at < datetime.now(UTC)
    paid = await psp.qp("POST", f"/v1/sandbox/qrs/{intent.payment.psp_reference}/pay")
    assert paid.status_code == 200, paid.text
    done = await admin.wait_intent(intent.id, timeout=30)
    assert (done.status, done.failure_code) == ("SETTLED", None), psp.saga.about(intent.id)
    assert [leg.name for leg in done.legs] == ["principal", "spread", "buy"]
    assert (await thb_balance(admin, payee)).posted == 40_000
    after = posted((await accounts(psp.saga.database_url, [thb_liquidity]))[thb_liquidity])
    assert liquidity_before - after == 40_000
    made = await transfers(
        psp.saga.database_url, [ids.transfer_id(intent.id, leg) for leg in ("principal", "spread", "buy")]
    )
    assert sorted((t.ledger, t.amount) for t in made.values()) == [
        (643, 1_000),
        (643, 100_000),
        (764, 40_000),
    ]
    assert {t.user_data_128 for t in made.values()} == {uuid.UUID(intent.exchange.quote_id).int}


async def fund_liquidity(admin: PMClient, funding: http_api.CreateIntent) -> None:
    created = await admin.create_intent(funding, idempotency_key=uuid.uuid4().hex)
    done = await admin.wait_intent(created.id, timeout=30)
    assert (done.status, done.failure_code) == ("SETTLED", None), done


async def test_a_topup_no_rate_can_price_or_no_route_can_pay_is_refused_at_intake(admin: PMClient) -> None:
    usd = http_api.CreateIntent(
        type="SBP_TOPUP",
        amount=10_000,
        currency="USD",
        from_=http_api.SbpParty(),
        to=http_api.UserParty(id="u-x"),
    )
    with pytest.raises(PMError) as refused:
        await admin.create_intent(usd, idempotency_key=uuid.uuid4().hex)
    assert refused.value.problem is not None
    assert (refused.value.status, refused.value.problem.code) == (422, "unknown_pair")
    dollars_out = http_api.CreateIntent(
        type="PROMPTPAY_WITHDRAWAL", amount=10_000, currency="USD", from_=http_api.UserParty(id="u-x"),
        to=http_api.PromptPayParty(proxy_type="MSISDN", proxy_value="0812345678"),
    )  # fmt: skip
    with pytest.raises(PMError) as unpaid:
        await admin.create_intent(dollars_out, idempotency_key=uuid.uuid4().hex)
    assert unpaid.value.problem is not None
    assert (unpaid.value.status, unpaid.value.problem.code) == (422, "currency_unsupported")
