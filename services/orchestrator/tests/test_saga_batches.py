"""The saga's intake in this process, against real PostgreSQL (a database of this module's own) and
real Redis: what a batch of submitted intents does to their rows, what it sends, what it refuses, and
how a batch's failure or a full ledger-commands stream is contained (`World`: see conftest.py).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from typing import TYPE_CHECKING, Any

import pytest
import tigerbeetle as tb

from pm_orchestrator import failures
from pm_orchestrator.plan import Plan
from pm_orchestrator.rules import Rules
from pm_orchestrator.saga import Job, Saga, UnknownIntentError
from pm_orchestrator.states import CREATED, FAILED, VALIDATED, Move
from pm_shared.intents import legs
from pm_shared.ledger import chart, ids
from pm_shared.streams import Publisher
from pm_shared.streams.publisher import PAYLOAD_FIELD

if TYPE_CHECKING:
    from .conftest import World

# These tests follow P2P intents through the two phases (authorize, settle, void): P2P on its
# two-phase route. P2P's own route (one round trip) is tested in test_saga_transfer.py.
pytestmark = pytest.mark.usefixtures("two_phase_p2p")


async def test_a_batch_of_intents_is_validated_priced_and_authorized_in_one_go(world: World) -> None:
    payer, payee, nobody = (f"u-{secrets.token_hex(4)}" for _ in range(3))
    await world.wallets(payer, payee)
    await world.add_fee(f"pre-{payer}", "intent.amount / 100", "PRE", only_for=payer)
    good = await world.intent(payer, payee, 10_000)
    no_wallet = await world.intent(payer, nobody, 500)
    unknown = str(uuid.uuid4())  # a UUID PM never issued
    deliveries = [world.submitted(i) for i in (good, no_wallet, unknown, "not-a-uuid")]

    failed = await world.saga.on_intents(deliveries)

    # Only the two messages naming no intent fail, and for good (dead-lettered at once).
    assert set(failed) == {deliveries[2].entry_id, deliveries[3].entry_id}
    assert all(isinstance(exc, UnknownIntentError) for exc in failed.values())

    row = await world.row(good)
    assert (row.state, row.step, row.channel) == (VALIDATED, "authorize", "INTERNAL_P2P")
    assert row.route == ("validate", "price", "reserve_limits", "authorize", "settle")
    assert [(f.rule_id, f.amount, f.timing) for f in row.fees] == [(f"pre-{payer}", 100, "PRE")]
    command = await world.command(good, "authorize")
    wallet_a, wallet_b = legs.wallet(payer, "THB").id, legs.wallet(payee, "THB").id
    fee_revenue = legs.operator(chart.Code.FEE_REVENUE, "THB").id
    linked, pending = int(tb.TransferFlags.LINKED), int(tb.TransferFlags.PENDING)
    timeout = world.planner.pending_timeout_s
    assert [
        (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.flags, t.timeout)
        for t in command.transfers
    ] == [
        (ids.transfer_id(good, "principal"), wallet_a, wallet_b, 10_000, pending | linked, timeout),
        (ids.transfer_id(good, f"fee:pre-{payer}"), wallet_a, fee_revenue, 100, pending, timeout),
    ]
    assert all(t.user_data_128 == uuid.UUID(good).int and t.ledger == 764 for t in command.transfers)

    failed_row = await world.row(no_wallet)
    assert failed_row.state == FAILED
    assert await world.failure_code(no_wallet) == failures.ACCOUNT_NOT_FOUND
    assert await world.moves(no_wallet) == [(CREATED, FAILED)]
    assert not await world.commands(no_wallet)

    # The same messages again (a redelivery) change nothing and send nothing more.
    before = await world.commands()
    again = await world.saga.on_intents([world.submitted(good), world.submitted(no_wallet)])
    assert again == {}
    assert await world.commands() == before
    assert (await world.row(good)).updated_at == row.updated_at


async def test_an_unbuilt_route_fails_at_intake_without_touching_money(world: World) -> None:
    payer = f"u-{secrets.token_hex(4)}"
    await world.wallets(payer)
    kind = f"GIFT_{secrets.token_hex(3).upper()}"  # its own type: the module's tests share one database
    await world.pool.execute(
        "INSERT INTO pm.payment_route (operation_type, channel, steps) VALUES ($1, 'INTERNAL', $2)",
        kind,
        ["validate", "wrap_gift", "authorize"],
    )
    intent_id = await world.intent(payer, None, type_=kind)
    assert await world.saga.on_intents([world.submitted(intent_id)]) == {}
    row = await world.row(intent_id)
    assert row.state == FAILED
    reason = await world.pool.fetchval(
        "SELECT failure_code || ': ' || (SELECT reason FROM pm.intent_event WHERE intent_id = i.id"
        " ORDER BY id DESC LIMIT 1) FROM pm.intent i WHERE id = $1",
        uuid.UUID(intent_id),
    )
    assert reason.startswith(f"ROUTE_UNAVAILABLE: route {kind}/INTERNAL needs step(s) wrap_gift")
    assert not await world.commands(intent_id)


async def test_a_poisoned_move_fails_alone(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    good, bad = await world.intent(payer, payee), await world.intent(payer, payee)
    good_plan = Plan(await world.row(good), Move(good, CREATED, FAILED, "test", failure_code="X"))
    # Not JSON: PostgreSQL refuses the cast, which fails the batch's transaction.
    bad_plan = Plan(await world.row(bad), Move(bad, CREATED, FAILED, "test", failure_code="X", legs=b"{oops"))
    failed = await world.saga.apply(
        [(good_plan, [Job("1-1", good, None)]), (bad_plan, [Job("1-2", bad, None)])]
    )
    assert list(failed) == ["1-2"]
    assert (await world.row(good)).state == FAILED
    assert (await world.row(bad)).state == CREATED


# -- fee rules ------------------------------------------------------------------------------------


async def test_a_new_fee_rule_version_prices_the_next_intent(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    rule = f"flat-{payer}"
    await world.add_fee(rule, "10", "PRE", only_for=payer)
    first = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(first)])
    await world.add_fee(rule, "25", "PRE", only_for=payer)
    second = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(second)])
    assert [(f.rule_version, f.amount) for f in (await world.row(first)).fees if f.rule_id == rule] == [
        (1, 10)
    ]
    assert [(f.rule_version, f.amount) for f in (await world.row(second)).fees if f.rule_id == rule] == [
        (2, 25)
    ]


async def test_a_fee_rule_that_errors_fails_the_intent_with_its_code(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.add_fee(f"broken-{payer}", "intent.metadata['missing'] == 'x' ? 1 : 2", "PRE", only_for=payer)
    intent_id = await world.intent(payer, payee)
    assert await world.saga.on_intents([world.submitted(intent_id)]) == {}
    assert await world.failure_code(intent_id) == "FEE_RULE_ERROR"


# -- room and rules -------------------------------------------------------------------------------


async def test_intake_waits_for_room_in_the_ledger_commands_stream(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    publisher = Publisher(world.redis, threshold=8)
    saga = Saga(world.pool, publisher, world.saga.rules, world.planner, "standard", intake_pause_max_s=0.5)
    intent_id = await world.intent(payer, payee)

    # Room enough: no wait.
    started = asyncio.get_running_loop().time()
    await saga.wait_for_ledger_room([intent_id])
    assert asyncio.get_running_loop().time() - started < 0.2

    # Six commands nobody has read leave less than a quarter of the room: intake holds, then goes on.
    for _ in range(6):
        await world.redis.xadd("{pm:ledger:commands:0}", {PAYLOAD_FIELD: b"{}"})
    await asyncio.sleep(0.11)  # past the publisher's cached reading
    started = asyncio.get_running_loop().time()
    assert await saga.on_intents([world.submitted(intent_id)]) == {}
    assert asyncio.get_running_loop().time() - started >= 0.5
    assert (await world.row(intent_id)).state == VALIDATED


async def test_batches_handled_at_once_on_a_fresh_start_all_see_the_routes(world: World) -> None:
    # A fresh orchestrator: nothing loaded yet, and several batches look at the rules together.
    rules = Rules(world.redis, world.pool, refresh_s=60)
    conns = [await world.pool.acquire() for _ in range(3)]
    try:

        async def look(conn: Any) -> set[str]:
            await rules.refresh(conn)
            return set(rules.routes)

        seen = await asyncio.gather(*(look(conn) for conn in conns))
    finally:
        for conn in conns:
            await world.pool.release(conn)
    assert all({"P2P", "ADJUSTMENT"} <= routes for routes in seen), seen
