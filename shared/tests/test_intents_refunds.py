"""`pm_shared.intents.refunds`: the checks a refund passes, and the intake on a real PostgreSQL
(replays, the cap, concurrent refunds of one original serialised by its row lock)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import pytest_asyncio

from pm_shared.db import Pool, create_pool
from pm_shared.intents import refunds
from pm_shared.intents.refunds import NewRefund, Original, RefundRefusedError

MERCHANT = {"kind": "merchant", "id": "m-shop"}
PAYER = {"kind": "user", "id": "u-payer"}


def original(**changes: Any) -> Original:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "type": "MINIAPP_CHARGE",
        "state": "SETTLED",
        "amount": 1_000,
        "currency": "THB",
        "source": PAYER,
        "target": MERCHANT,
        "miniapp_id": "app-1",
    }
    fields.update(changes)
    return Original(**fields)


def refund(of: uuid.UUID, amount: int, **changes: Any) -> NewRefund:
    fields: dict[str, Any] = {
        "id": uuid.uuid4(),
        "key_id": KEY,
        "idempotency_key": secrets.token_hex(8),
        "request_hash": hashlib.sha256(str(amount).encode()).digest(),
        "amount": amount,
        "currency": "THB",
        "source": MERCHANT,
        "target": PAYER,
        "original_intent_id": of,
    }
    fields.update(changes)
    return NewRefund(**fields)


def refused(code: str, o: Original, new: NewRefund, already: int = 0) -> RefundRefusedError:
    with pytest.raises(RefundRefusedError) as caught:
        refunds.check(o, new, already)
    assert caught.value.code == code
    return caught.value


# --- the checks -------------------------------------------------------------------------------------


def test_a_settled_charge_refunded_by_its_merchant_to_its_payer_passes() -> None:
    o = original()
    refunds.check(o, refund(o.id, 1_000), 0)
    refunds.check(o, refund(o.id, 400), 600)


def test_a_payout_sent_back_is_refunded_from_the_payee_it_was_paid_to() -> None:
    payee = {"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"}
    o = original(type="PROMPTPAY_WITHDRAWAL", target=payee)
    refunds.check(o, refund(o.id, 1_000, source=payee), 0)
    assert refused("refund_parties_mismatch", o, refund(o.id, 1_000)).status == 422
    # The very payee, proxy and all: another PromptPay proxy is not where the money went.
    other = {**payee, "proxyValue": "0899999999"}
    assert refused("refund_parties_mismatch", o, refund(o.id, 1_000, source=other)).status == 422


@pytest.mark.parametrize("kind", ["P2P", "SBP_TOPUP", "MINIAPP_CREDIT", "REFUND", "FX_EXCHANGE"])
def test_other_types_are_not_refundable(kind: str) -> None:
    o = original(type=kind)
    assert refused("original_not_refundable", o, refund(o.id, 1)).status == 422


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ({"kind": "merchant", "id": "m-other"}, PAYER),
        (MERCHANT, {"kind": "user", "id": "u-other"}),
        ({"kind": "promptpay"}, PAYER),
        (PAYER, MERCHANT),
    ],
)
def test_parties_must_mirror_the_original(source: dict[str, Any], target: dict[str, Any]) -> None:
    o = original()
    refused("refund_parties_mismatch", o, refund(o.id, 1, source=source, target=target))


def test_the_currency_must_be_the_originals() -> None:
    o = original()
    assert refused("refund_currency_mismatch", o, refund(o.id, 1, currency="USD")).status == 422


@pytest.mark.parametrize("state", ["CREATED", "VALIDATED", "AUTHORIZED", "FAILED"])
def test_only_a_settled_original_is_refunded(state: str) -> None:
    o = original(state=state)
    assert refused("original_not_settled", o, refund(o.id, 1)).status == 409


def test_refunds_never_add_up_to_more_than_the_original() -> None:
    o = original()
    error = refused("refund_exceeds_original", o, refund(o.id, 401), 600)
    assert error.status == 409
    assert "400" in error.detail


# --- the intake -------------------------------------------------------------------------------------

KEY = "pk_00000000000000000000f00d"


@pytest_asyncio.fixture
async def pool(database_url: str) -> AsyncIterator[Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=12)
    async with pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, 'x', $2)"
            " ON CONFLICT DO NOTHING",
            KEY,
            json.dumps({"operations": ["REFUND"], "owners": None, "admin": False}),
        )
    try:
        yield pool
    finally:
        await pool.close()


async def stored_original(pool: Pool, *, state: str = "SETTLED", amount: int = 1_000) -> uuid.UUID:
    intent_id = uuid.uuid4()
    async with pool.acquire() as conn:
        await conn.execute(
            """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount,
                                      currency, source, target, miniapp_id)
               VALUES ($1, $2, $3, '\\x00', 'MINIAPP_CHARGE', $4, $5, 'THB', $6, $7, 'app-1')""",
            intent_id,
            KEY,
            str(intent_id),
            state,
            amount,
            json.dumps(PAYER),
            json.dumps(MERCHANT),
        )
    return intent_id


async def create(pool: Pool, new: NewRefund) -> refunds.Created:
    async with pool.acquire() as conn:
        made = await refunds.create(
            conn, new, stream="pm:intents", message_id=f"{new.id}:submitted", payload=b"{}"
        )
        # Its outbox row is counted here, never published: a later test's outbox relay would put this
        # stand-in payload on pm:intents.
        await conn.execute(
            "UPDATE pm.outbox SET published_at = now() WHERE message_id = $1", f"{new.id}:submitted"
        )
        return made


async def test_a_refund_is_written_with_its_timeline_and_outbox_row(pool: Pool) -> None:
    of = await stored_original(pool)
    new = refund(of, 250, comment="sorry")
    made = await create(pool, new)
    assert (made.intent_id, made.replayed, made.request_hash) == (new.id, False, new.request_hash)
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM pm.intent WHERE id = $1", new.id)
        events = await conn.fetchval("SELECT count(*) FROM pm.intent_event WHERE intent_id = $1", new.id)
        outbox = await conn.fetchval("SELECT count(*) FROM pm.outbox WHERE intent_id = $1", str(new.id))
        assert await refunds.refunded(conn, of) == 250
    assert row is not None
    assert (row["type"], row["state"], row["original_intent_id"], row["miniapp_id"]) == (
        "REFUND",
        "CREATED",
        of,
        "app-1",
    )
    assert (row["amount"], row["comment"], json.loads(row["source"])) == (250, "sorry", MERCHANT)
    assert (events, outbox) == (1, 1)


async def test_a_replay_is_answered_before_the_cap_and_writes_nothing(pool: Pool) -> None:
    of = await stored_original(pool)
    first = refund(of, 1_000)
    await create(pool, first)
    again = await create(pool, msgspec.structs.replace(first, id=uuid.uuid4(), request_hash=b"other"))
    assert (again.intent_id, again.replayed, again.request_hash) == (first.id, True, first.request_hash)
    async with pool.acquire() as conn:
        assert await refunds.refunded(conn, of) == 1_000


async def test_a_missing_or_unsettled_original_is_refused(pool: Pool) -> None:
    with pytest.raises(RefundRefusedError) as caught:
        await create(pool, refund(uuid.uuid4(), 1))
    assert (caught.value.status, caught.value.code) == (404, "original_not_found")
    of = await stored_original(pool, state="AUTHORIZED")
    with pytest.raises(RefundRefusedError) as caught:
        await create(pool, refund(of, 1))
    assert caught.value.code == "original_not_settled"


async def test_failed_refunds_do_not_count(pool: Pool) -> None:
    of = await stored_original(pool)
    first = refund(of, 1_000)
    await create(pool, first)
    async with pool.acquire() as conn:
        await conn.execute(
            "UPDATE pm.intent SET state = 'FAILED', failure_code = 'insufficient_funds' WHERE id = $1",
            first.id,
        )
    await create(pool, refund(of, 1_000))


async def test_concurrent_refunds_never_exceed_the_original(pool: Pool) -> None:
    of = await stored_original(pool, amount=1_000)
    outcomes = await asyncio.gather(
        *(create(pool, refund(of, 300)) for _ in range(10)), return_exceptions=True
    )
    made = [o for o in outcomes if isinstance(o, refunds.Created)]
    refused_ = [o for o in outcomes if isinstance(o, RefundRefusedError)]
    assert len(made) == 3
    assert len(refused_) == 7
    assert {r.code for r in refused_} == {"refund_exceeds_original"}
    async with pool.acquire() as conn:
        assert await refunds.refunded(conn, of) == 900
