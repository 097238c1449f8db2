"""The saga's handling of ledger results in this process, against real PostgreSQL (a database of this
module's own) and real Redis: settling once whatever the order, failing and voiding on a refusal, and
the failure code a refusal maps to (`World`: see conftest.py).

Ledger results are built here (the ledger-writer's behaviour is tested on its own). One test drives
the embedded ledger directly to check that an authorization left past its timeout fails the intent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from typing import TYPE_CHECKING

import msgspec
import pytest
import tigerbeetle as tb

from pm_orchestrator import failures
from pm_orchestrator.plan import RESEND_MARK, Planner
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, VALIDATED
from pm_orchestrator.steps import default_registry
from pm_shared.intents import legs
from pm_shared.ledger import accounts, chart, ids, open_ledger
from pm_shared.messages import LedgerCommand, LedgerEventResult, LedgerResult, LedgerTransfer, now

if TYPE_CHECKING:
    from .conftest import World

# These tests follow P2P intents through the two phases (authorize, settle, void): P2P on its
# two-phase route. P2P's own route (one round trip) is tested in test_saga_transfer.py.
pytestmark = pytest.mark.usefixtures("two_phase_p2p")


async def test_results_settle_the_intent_once_whatever_their_order_and_repeats(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.add_fee(f"post-{payer}", "7", "POST", only_for=payer, payer="target")
    intent_id = await world.intent(payer, payee, 2_500)
    await world.saga.on_intents([world.submitted(intent_id)])
    authorize = await world.command(intent_id, "authorize")

    authorized = world.answer(authorize)
    assert await world.saga.on_results([authorized, authorized]) == {}  # a duplicate in the same batch
    assert (await world.row(intent_id)).state == AUTHORIZED
    settle = await world.command(intent_id, "settle")
    post, fee = settle.transfers
    assert post.pending_id == ids.transfer_id(intent_id, "principal") and post.amount == 2_500
    assert post.flags == int(tb.TransferFlags.POST_PENDING_TRANSFER | tb.TransferFlags.LINKED)
    assert (fee.debit_account_id, fee.amount, fee.flags) == (legs.wallet(payee, "THB").id, 7, 0)

    # The settle result, then the authorize result again (reordered): settled once.
    assert await world.saga.on_results([world.answer(settle), authorized]) == {}
    assert await world.saga.on_results([world.answer(settle)]) == {}
    row = await world.row(intent_id)
    assert (row.state, row.step) == (SETTLED, None)
    assert await world.moves(intent_id) == [
        (CREATED, VALIDATED),
        (VALIDATED, AUTHORIZED),
        (AUTHORIZED, SETTLED),
    ]
    history = await world.pool.fetch(
        "SELECT owner_id, direction, amount, fee, counterparty_name, comment FROM pm.tx_history"
        " WHERE intent_id = $1 ORDER BY direction",
        uuid.UUID(intent_id),
    )
    assert [tuple(r) for r in history] == [
        (payee, "in", 2_500, 7, "Payer", "rent"),
        (payer, "out", 2_500, 0, "Payee", "rent"),
    ]
    balances = {
        r["owner_id"]: (r["debits_posted"], r["credits_posted"])
        for r in await world.pool.fetch(
            "SELECT owner_id, debits_posted, credits_posted FROM pm.account_balance WHERE owner_id = ANY($1)",
            [payer, payee],
        )
    }
    assert balances == {payer: (2_500, 0), payee: (7, 2_500)}
    states = [event["state"] for event in await world.events()]
    assert states.count(SETTLED) == 1


async def test_a_refused_authorization_fails_the_intent_and_gives_its_limits_back(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.pool.execute(
        "INSERT INTO pm.limit_rule (rule_id, version, subject_kind, subject, operation_type, currency,"
        " period, max_count) VALUES ($1, 1, 'user', $2, 'P2P', 'THB', 'day', 1)",
        f"one-a-day-{payer}",
        payer,
    )
    first = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(first)])
    authorize = await world.command(first, "authorize")
    assert await world.saga.on_results([world.answer(authorize, ["EXCEEDS_CREDITS"])]) == {}
    row = await world.row(first)
    assert row.state == FAILED
    assert await world.failure_code(first) == failures.INSUFFICIENT_FUNDS
    # Nothing to void (the chain was refused whole) and the day's one payment is free again.
    assert not [c for c in await world.commands(first) if c.step == "void"]
    second = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(second)])
    assert (await world.row(second)).state == VALIDATED
    third = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(third)])
    assert await world.failure_code(third) == failures.LIMIT_EXCEEDED


async def test_a_refused_settlement_voids_the_authorization(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await world.add_fee(f"post-{payer}", "50", "POST", only_for=payer)
    intent_id = await world.intent(payer, payee, 1_000)
    await world.saga.on_intents([world.submitted(intent_id)])
    await world.saga.on_results([world.answer(await world.command(intent_id, "authorize"))])
    settle = await world.command(intent_id, "settle")
    # The POST fee does not fit: the post in front of it fails with it.
    refused = world.answer(settle, ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"])
    assert await world.saga.on_results([refused]) == {}
    assert await world.failure_code(intent_id) == failures.INSUFFICIENT_FUNDS
    void = await world.command(intent_id, "void")
    assert [(t.pending_id, t.amount, t.flags) for t in void.transfers] == [
        (ids.transfer_id(intent_id, "principal"), 1_000, int(tb.TransferFlags.VOID_PENDING_TRANSFER))
    ]
    legs_shown = msgspec.json.decode(
        await world.pool.fetchval("SELECT legs FROM pm.intent WHERE id = $1", uuid.UUID(intent_id))
    )
    assert [(leg["name"], leg["state"]) for leg in legs_shown] == [
        ("principal", "voided"),
        (f"fee:post-{payer}", "failed"),
    ]
    assert not await world.pool.fetchval(
        "SELECT count(*) FROM pm.tx_history WHERE intent_id = $1", uuid.UUID(intent_id)
    )


# -- ID_ALREADY_FAILED ----------------------------------------------------------------------------


async def test_a_repeat_refused_as_already_failed_waits_for_the_first_answer(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(intent_id)])
    authorize = await world.command(intent_id, "authorize")
    await world.saga.on_results([world.answer(authorize, ["ID_ALREADY_FAILED"])])
    assert (await world.row(intent_id)).state == VALIDATED  # the first answer, with the reason, comes
    await world.pool.execute(
        "UPDATE pm.intent SET updated_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(intent_id)
    )
    await world.saga.on_results([world.answer(authorize, ["ID_ALREADY_FAILED"])])
    assert await world.failure_code(intent_id) == failures.LEDGER_REJECTED


async def test_a_resend_refused_as_already_failed_fails_at_once(world: World) -> None:
    # The resume sweep sends a command again only after the intent has not moved for a while: the
    # first answer is lost, so waiting out the grace would only leave the intent open.
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(intent_id)])
    authorize = await world.command(intent_id, "authorize")
    resent = msgspec.structs.replace(authorize, message_id=f"{intent_id}:authorize{RESEND_MARK}1")
    await world.saga.on_results([world.answer(resent, ["ID_ALREADY_FAILED"] * len(authorize.transfers))])
    row = await world.pool.fetchrow(
        "SELECT state, failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
    )
    assert row is not None and (row["state"], row["failure_code"]) == (FAILED, failures.LEDGER_REJECTED)


async def test_a_repeat_whose_first_failure_the_writer_found_fails_at_once_with_that_reason(
    world: World,
) -> None:
    # The first answer was lost (the writer died before publishing it); the writer's retry answered
    # ID_ALREADY_FAILED and inferred EXCEEDS_CREDITS from the accounts: no wait for an answer that
    # will never come, and the payer sees the real reason.
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(intent_id)])
    authorize = await world.command(intent_id, "authorize")
    delivery = world.answer(
        authorize, ["ID_ALREADY_FAILED"] + ["LINKED_EVENT_FAILED"] * (len(authorize.transfers) - 1)
    )
    first, *rest = delivery.message.transfers
    inferred = msgspec.structs.replace(first, first_failure="EXCEEDS_CREDITS")
    message = msgspec.structs.replace(delivery.message, transfers=[inferred, *rest])
    await world.saga.on_results([msgspec.structs.replace(delivery, message=message)])
    row = await world.pool.fetchrow(
        "SELECT state, failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
    )
    assert row is not None and (row["state"], row["failure_code"]) == (FAILED, failures.INSUFFICIENT_FUNDS)


# -- the ledger's own word on expiry, and every status's failure code -----------------------------


async def test_an_authorization_past_its_timeout_fails_as_expired(world: World, saga_db: str) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    ledger = await open_ledger("embedded+" + saga_db)
    try:
        async with world.pool.acquire() as conn:
            await accounts.open_accounts(
                ledger,
                conn,
                [chart.AccountSpec("user", u, "THB", chart.Code.USER_WALLET) for u in (payer, payee)]
                + chart.operator_accounts("THB"),
            )
        equity = legs.operator(chart.Code.OPERATOR_EQUITY, "THB").id
        (funded,) = await ledger.create_transfers(
            [
                tb.Transfer(
                    id=tb.id(),
                    debit_account_id=equity,
                    credit_account_id=legs.wallet(payer, "THB").id,
                    amount=5_000,
                    ledger=764,
                    code=2,
                )
            ]
        )
        assert funded.status == tb.CreateTransferStatus.CREATED
        planner = Planner(default_registry(), pending_timeout_s=1, already_failed_grace_s=120)
        intent_id = await world.intent(payer, payee, 1_000)
        await world.saga.on_intents([world.submitted(intent_id)])
        row = await world.row(intent_id)
        authorize = legs.authorize(row, legs.legs(row), timeout_s=1)
        assert [r.status for r in await ledger.create_transfers([_tb(t) for t in authorize])] == [
            tb.CreateTransferStatus.CREATED
        ]
        await asyncio.sleep(1.2)
        settle = legs.settle(row, legs.legs(row))
        statuses = [r.status.name for r in await ledger.create_transfers([_tb(t) for t in settle])]
        assert statuses == ["PENDING_TRANSFER_EXPIRED"]
        command = LedgerCommand(
            intent_id=intent_id,
            message_id=f"{intent_id}:settle",
            produced_at=now(),
            step="settle",
            transfers=settle,
        )
        authorized = dataclasses.replace(row, state=AUTHORIZED, step="settle")
        plan = planner.result(authorized, world.answer(command, statuses).message)
        assert plan is not None and plan.move.failure_code == failures.AUTHORIZATION_EXPIRED
    finally:
        await ledger.close()


def _tb(t: LedgerTransfer) -> tb.Transfer:
    fields = msgspec.structs.asdict(t)
    flags = fields.pop("flags")
    return tb.Transfer(**fields, flags=tb.TransferFlags(flags))


def test_every_failure_code_a_ledger_status_maps_to_is_known() -> None:
    for status in tb.CreateTransferStatus:
        result = LedgerResult(
            intent_id="i",
            message_id="m",
            produced_at=now(),
            command_id="c",
            step="authorize",
            ok=False,
            transfers=[
                LedgerEventResult(id=1, status="LINKED_EVENT_FAILED", timestamp=0),
                LedgerEventResult(id=2, status=status.name, timestamp=0),
            ],
        )
        failure = failures.from_ledger(result)
        assert failure.code in failures.CODES
        if status.name in ("CREATED", "EXISTS", "LINKED_EVENT_FAILED", "LINKED_EVENT_CHAIN_OPEN"):
            continue  # success, or a status that only follows another event's failure
        assert status.name in failure.reason
    assert (
        failures.from_ledger(
            LedgerResult(
                intent_id="i",
                message_id="m",
                produced_at=now(),
                command_id="c",
                step="settle",
                ok=False,
                transfers=[LedgerEventResult(id=1, status="EXCEEDS_CREDITS", timestamp=0)],
            )
        ).code
        == failures.INSUFFICIENT_FUNDS
    )
