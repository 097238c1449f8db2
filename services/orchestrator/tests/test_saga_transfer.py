"""One ledger round trip (the `transfer` step) in this process, against real PostgreSQL (a database of
this module's own, routes as the migrations seed them) and real Redis: every leg of an intent with no
step outside the ledger in one linked chain of posted transfers, AUTHORIZED and SETTLED recorded from
its one result, a refusal failing with nothing to void (`World`: see conftest.py)."""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import msgspec
import tigerbeetle as tb

from pm_orchestrator import failures
from pm_orchestrator.resume import Resumer
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, VALIDATED
from pm_orchestrator.steps import TRANSFER
from pm_shared.intents import legs
from pm_shared.ledger import chart, ids

if TYPE_CHECKING:
    from .conftest import World

LINKED = int(tb.TransferFlags.LINKED)


async def test_routes_with_no_external_step_move_in_one_round_trip(world: World) -> None:
    rows = await world.pool.fetch("SELECT operation_type, steps FROM pm.payment_route WHERE enabled")
    routes = {r["operation_type"]: list(r["steps"]) for r in rows}
    assert routes["P2P"] == ["validate", "price", "reserve_limits", TRANSFER]
    assert routes["ADJUSTMENT"] == ["validate", TRANSFER]
    assert routes["MINIAPP_CREDIT"] == ["validate", "price", TRANSFER]
    assert routes["REFUND"] == ["validate", "price", TRANSFER]
    # A PSP step, an exchange's quote and a merchant's charge keep their two phases.
    assert routes["PROMPTPAY_WITHDRAWAL"][-3:] == ["authorize", "psp_payout", "settle"]
    assert routes["SBP_TOPUP"] == ["validate", "psp_collect", "settle"]
    assert routes["MINIAPP_CHARGE"][-2:] == ["authorize", "settle"]
    assert routes["FX_EXCHANGE"][-2:] == ["authorize", "settle"]


async def test_a_p2p_posts_every_leg_in_one_chain_and_records_authorized_and_settled(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.add_fee(f"pre-{payer}", "intent.amount / 100", "PRE", only_for=payer)
    await world.add_fee(f"post-{payer}", "7", "POST", only_for=payer, payer="target")
    intent_id = await world.intent(payer, payee, 2_500)
    await world.take_in(intent_id)

    row = await world.row(intent_id)
    assert (row.state, row.step) == (VALIDATED, TRANSFER)
    assert row.route is not None and "authorize" not in row.route
    command = await world.command(intent_id, TRANSFER)
    assert command.message_id == f"{intent_id}:{TRANSFER}"
    fee_revenue = legs.operator(chart.Code.FEE_REVENUE, "THB").id
    wallet_a, wallet_b = legs.wallet(payer, "THB").id, legs.wallet(payee, "THB").id
    # The principal, then each fee in priority order: plain transfers with the legs' own ids, linked.
    assert [
        (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.flags, t.pending_id, t.timeout, t.code)
        for t in command.transfers
    ] == [
        (ids.transfer_id(intent_id, "principal"), wallet_a, wallet_b, 2_500, LINKED, 0, 0, 1),
        (ids.transfer_id(intent_id, f"fee:pre-{payer}"), wallet_a, fee_revenue, 25, LINKED, 0, 0, 10),
        (ids.transfer_id(intent_id, f"fee:post-{payer}"), wallet_b, fee_revenue, 7, 0, 0, 0, 10),
    ]
    assert {t.user_data_128 for t in command.transfers} == {uuid.UUID(intent_id).int}
    assert [leg["state"] for leg in await _legs(world, intent_id)] == ["requested"] * 3

    answer = world.answer(command)
    assert await world.saga.on_results([answer, answer]) == {}  # a duplicate in the same batch
    assert await world.saga.on_results([world.answer(command, ["EXISTS"] * 3)]) == {}  # a redelivery
    row = await world.row(intent_id)
    assert (row.state, row.step) == (SETTLED, None)
    assert await world.moves(intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    events = [e for e in await world.events() if e["intent_id"] == intent_id]
    assert [(e["previous"], e["state"]) for e in events] == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    assert [leg["state"] for leg in await _legs(world, intent_id)] == ["posted"] * 3
    assert [c.step for c in await world.commands(intent_id)] == [TRANSFER]  # no settle, nothing to void
    history = await world.pool.fetch(
        "SELECT owner_id, direction, amount, fee FROM pm.tx_history WHERE intent_id = $1 ORDER BY direction",
        uuid.UUID(intent_id),
    )
    assert [tuple(r) for r in history] == [(payee, "in", 2_500, 7), (payer, "out", 2_500, 25)]
    balances = await world.pool.fetch(
        "SELECT owner_id, debits_posted, credits_posted FROM pm.account_balance WHERE owner_id = ANY($1)",
        [payer, payee],
    )
    assert {r["owner_id"]: (r["debits_posted"], r["credits_posted"]) for r in balances} == {
        payer: (2_525, 0),
        payee: (7, 2_500),
    }


async def test_a_refused_transfer_fails_with_nothing_to_void_and_gives_its_limits_back(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.add_fee(f"pre-{payer}", "100", "PRE", only_for=payer)
    await world.pool.execute(
        "INSERT INTO pm.limit_rule (rule_id, version, subject_kind, subject, operation_type, currency,"
        " period, max_count) VALUES ($1, 1, 'user', $2, 'P2P', 'THB', 'day', 1)",
        f"one-a-day-{payer}",
        payer,
    )
    short = await world.intent(payer, payee, 4_950)
    await world.take_in(short)
    command = await world.command(short, TRANSFER)
    # The fee does not fit once the principal is paid: the principal before it fails with it.
    await world.ledger_answers(command, ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"])
    assert await world.failure_code(short) == failures.INSUFFICIENT_FUNDS
    assert await world.moves(short) == [(CREATED, VALIDATED), (VALIDATED, FAILED)]
    assert [leg["state"] for leg in await _legs(world, short)] == ["failed"] * 2
    assert [c.step for c in await world.commands(short)] == [TRANSFER]  # nothing held, nothing voided
    history = await world.pool.fetchval(
        "SELECT count(*) FROM pm.tx_history WHERE intent_id = $1", uuid.UUID(short)
    )
    assert history == 0
    # The day's one payment is free again.
    second = await world.intent(payer, payee, 1_000)
    await world.take_in(second)
    assert (await world.row(second)).state == VALIDATED
    third = await world.intent(payer, payee, 1_000)
    await world.take_in(third)
    assert await world.failure_code(third) == failures.LIMIT_EXCEEDED


async def test_an_adjustment_credits_the_wallet_in_one_round_trip(world: World) -> None:
    (payee,) = (f"u-{secrets.token_hex(4)}",)
    await world.wallets(payee)
    intent_id = await world.intent(None, payee, 9_000, type_="ADJUSTMENT")
    await world.take_in(intent_id)
    command = await world.command(intent_id, TRANSFER)
    equity, wallet = legs.operator(chart.Code.OPERATOR_EQUITY, "THB").id, legs.wallet(payee, "THB").id
    sent = [(t.debit_account_id, t.credit_account_id, t.amount, t.flags, t.code) for t in command.transfers]
    assert sent == [(equity, wallet, 9_000, 0, 2)]  # one transfer: a chain of one is not linked
    await world.ledger_answers(command)
    assert await world.moves(intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]


async def test_a_stalled_transfer_is_resent_with_the_same_transfers(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.take_in(intent_id)
    first = await world.command(intent_id, TRANSFER)
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=30, interval_s=10)
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    sent = [c for c in await world.commands(intent_id) if c.step == TRANSFER]
    assert len(sent) == 2 and sent[1].message_id != first.message_id
    assert sent[1].transfers == first.transfers  # the same ids: the ledger answers EXISTS
    # The answer to the first command settles it; the resend's (EXISTS) then changes nothing.
    await world.ledger_answers(first)
    await world.ledger_answers(sent[1], ["EXISTS"])
    assert (await world.row(intent_id)).state == SETTLED
    assert len([m for m in await world.moves(intent_id) if m[1] == SETTLED]) == 1


async def test_an_intent_taken_in_two_phase_finishes_two_phase(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    seeded = ["validate", "price", "reserve_limits", TRANSFER]
    await world.route("P2P", ["validate", "price", "reserve_limits", "authorize", "settle"])
    try:
        intent_id = await world.intent(payer, payee)
        await world.take_in(intent_id)
    finally:
        await world.route("P2P", seeded)
    # The route changed while it waited: the one stamped on it still holds.
    await world.ledger_answers(await world.command(intent_id, "authorize"))
    await world.ledger_answers(await world.command(intent_id, "settle"))
    assert (await world.row(intent_id)).state == SETTLED
    later = await world.intent(payer, payee)
    await world.take_in(later)
    assert (await world.row(later)).step == TRANSFER


async def test_a_transfer_beside_another_ledger_or_psp_step_is_refused_at_intake(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.route("P2P", ["validate", "authorize", TRANSFER])
    try:
        intent_id = await world.intent(payer, payee)
        await world.take_in(intent_id)
    finally:
        await world.route("P2P", ["validate", "price", "reserve_limits", TRANSFER])
    assert await world.failure_code(intent_id) == failures.ROUTE_UNAVAILABLE
    assert await world.commands(intent_id) == []


async def _legs(world: World, intent_id: str) -> list[dict[str, object]]:
    raw = await world.pool.fetchval("SELECT legs FROM pm.intent WHERE id = $1", uuid.UUID(intent_id))
    found = msgspec.json.decode(raw) if isinstance(raw, (str, bytes)) else raw
    assert isinstance(found, list)
    return found
