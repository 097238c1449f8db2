"""The saga's batch handlers in this process, against real PostgreSQL (a database of this module's own)
and real Redis: what a batch of messages does to intents, what it sends, and what it refuses.

Ledger results are built here (the ledger-writer's behaviour is tested on its own); the end-to-end
tests in tests/test_saga.py run the whole fleet. One test drives the embedded ledger directly to
check that an authorization left past its timeout fails the intent.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_orchestrator import failures, legs
from pm_orchestrator.plan import RESEND_MARK, Plan, Planner
from pm_orchestrator.record import IntentRow, Side
from pm_orchestrator.resume import MAX_RESENDS, Resumer
from pm_orchestrator.rules import Rules
from pm_orchestrator.saga import Job, Saga, UnknownIntentError
from pm_orchestrator.states import AUTHORIZED, CREATED, FAILED, SETTLED, VALIDATED, Move
from pm_orchestrator.steps import default_registry
from pm_shared import db
from pm_shared.db import Pool
from pm_shared.fees import FeeRule, insert_rule
from pm_shared.ledger import accounts, chart, ids, open_ledger
from pm_shared.messages import (
    IntentSubmitted,
    LedgerCommand,
    LedgerEventResult,
    LedgerResult,
    LedgerTransfer,
    Party,
    new_message_id,
    now,
)
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.provision import provision
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing.db import new_database_url
from pm_tools.testing.fleet import delete_streams

STREAMS = ("pm:intents", "pm:ledger:commands", "pm:ledger:results", "pm:events")
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def saga_db() -> Iterator[str]:
    url = new_database_url()
    asyncio.run(_create(url))
    yield url
    asyncio.run(db.drop_database(url, force=True))


async def _create(url: str) -> None:
    await db.ensure_database(url)
    await db.migrate(url)


@dataclass
class World:
    pool: Pool
    redis: Redis
    saga: Saga
    planner: Planner
    key_id: str

    async def wallets(self, *users: str, currency: str = "THB") -> None:
        async with self.pool.acquire() as conn:
            specs = [chart.AccountSpec("user", u, currency, chart.Code.USER_WALLET) for u in users]
            await accounts.record_opened(conn, specs)

    async def intent(
        self,
        source: str | None,
        target: str | None,
        amount: int = 10_000,
        type_: str = "P2P",
        created_at: datetime | None = None,
    ) -> str:
        intent_id = str(uuid.uuid4())
        src = {"kind": "user", "id": source} if source else {"kind": "operator"}
        dst = {"kind": "user", "id": target} if target else {"kind": "operator"}
        await self.pool.execute(
            """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount,
                                      currency, source, target, from_name, to_name, comment, created_at)
               VALUES ($1, $2, $8, '\\x00', $3, 'CREATED', $4, 'THB', $5::jsonb, $6::jsonb,
                       'Payer', 'Payee', 'rent', $7)""",
            uuid.UUID(intent_id),
            self.key_id,
            type_,
            amount,
            msgspec.json.encode(src).decode(),
            msgspec.json.encode(dst).decode(),
            created_at or datetime.now(UTC),
            intent_id,
        )
        return intent_id

    async def row(self, intent_id: str) -> IntentRow:
        record = await self.pool.fetchrow(
            "SELECT id, type, state, step, channel, route, amount, currency, source, target, from_name,"
            " to_name, comment, requires_monitoring, metadata, fees, created_at, updated_at, payment"
            " FROM pm.intent WHERE id = $1",
            uuid.UUID(intent_id),
        )
        assert record is not None
        return IntentRow.from_record(record)

    async def commands(self) -> list[LedgerCommand]:
        entries = await self.redis.xrange("{pm:ledger:commands:0}")
        return [msgspec.json.decode(payload(fields), type=LedgerCommand) for _, fields in entries or []]

    async def timeline(self, intent_id: str) -> list[tuple[str | None, str]]:
        rows = await self.pool.fetch(
            "SELECT from_state, to_state FROM pm.intent_event WHERE intent_id = $1 ORDER BY id",
            uuid.UUID(intent_id),
        )
        return [(r["from_state"], r["to_state"]) for r in rows]


def payload(fields: object) -> bytes:
    assert isinstance(fields, dict)
    value = fields[PAYLOAD_FIELD]
    assert isinstance(value, bytes)
    return value


@pytest.fixture
async def world(saga_db: str, redis: Redis) -> AsyncIterator[World]:
    await delete_streams(redis, *STREAMS)
    await provision(redis, 1)
    pool = await db.create_pool(saga_db, max_size=4)
    key_id = f"pk_{secrets.token_hex(12)}"
    await pool.execute(
        "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, 'x', $2::jsonb)",
        key_id,
        '{"operations": ["*"], "owners": null, "admin": true}',
    )
    planner = Planner(default_registry(), TIMEOUT_S, already_failed_grace_s=120.0)
    saga = Saga(pool, Publisher(redis), Rules(redis, pool, refresh_s=0), planner, "standard")
    try:
        yield World(pool, redis, saga, planner, key_id)
    finally:
        await pool.close()
        await delete_streams(redis, *STREAMS)


def submitted(intent_id: str) -> Delivery[IntentSubmitted]:
    message = IntentSubmitted(
        intent_id=intent_id,
        message_id=new_message_id(),
        produced_at=now(),
        type="P2P",
        amount=1,
        currency="THB",
        source=Party(kind="user"),
        target=Party(kind="user"),
        key_id="pk",
    )
    return Delivery(
        entry_id=f"{secrets.randbelow(10**9)}-0", key="{pm:intents:0}", message=message, attempt=1
    )


def answer(command: LedgerCommand, statuses: Sequence[str] | None = None) -> Delivery[LedgerResult]:
    """The ledger's answer to `command`: every transfer CREATED, or the given statuses."""
    given = list(statuses) if statuses is not None else ["CREATED"] * len(command.transfers)
    result = LedgerResult(
        intent_id=command.intent_id,
        message_id=f"{command.message_id}:result",
        produced_at=now(),
        command_id=command.message_id,
        step=command.step,
        ok=all(s in ("CREATED", "EXISTS") for s in given),
        transfers=[
            LedgerEventResult(id=t.id, status=s, timestamp=1)
            for t, s in zip(command.transfers, given, strict=True)
        ],
    )
    return Delivery(
        entry_id=f"{secrets.randbelow(10**9)}-1", key="{pm:ledger:results:0}", message=result, attempt=1
    )


def command_for(commands: list[LedgerCommand], intent_id: str, step: str) -> LedgerCommand:
    found = [c for c in commands if c.intent_id == intent_id and c.step == step]
    assert len(found) == 1, [(c.intent_id, c.step) for c in commands]
    return found[0]


async def add_fee(
    world: World, rule_id: str, amount: str, timing: str, *, only_for: str, payer: str = "source"
) -> None:
    """A fee rule for P2P intents paid by `only_for` (the module's tests share one database)."""
    async with world.pool.acquire() as conn:
        await insert_rule(
            conn,
            FeeRule(
                rule_id=rule_id,
                version=0,
                operation_type="P2P",
                condition=f"intent.source.id == '{only_for}'",
                amount=amount,
                timing=timing,
                payer=payer,
                fee_account_code=10,
                priority=100 if timing == "PRE" else 200,
                max_fee=1_000_000,
                active_from=datetime.now(UTC) - timedelta(days=1),
                active_until=None,
            ),
        )


# -- intake ---------------------------------------------------------------------------------------


async def test_a_batch_of_intents_is_validated_priced_and_authorized_in_one_go(world: World) -> None:
    payer, payee, nobody = (f"u-{secrets.token_hex(4)}" for _ in range(3))
    await world.wallets(payer, payee)
    await add_fee(world, f"pre-{payer}", "intent.amount / 100", "PRE", only_for=payer)
    good = await world.intent(payer, payee, 10_000)
    no_wallet = await world.intent(payer, nobody, 500)
    unknown = str(uuid.uuid4())  # a UUID PM never issued
    deliveries = [submitted(good), submitted(no_wallet), submitted(unknown), submitted("not-a-uuid")]

    failed = await world.saga.on_intents(deliveries)

    # Only the two messages naming no intent fail, and for good (dead-lettered at once).
    assert set(failed) == {deliveries[2].entry_id, deliveries[3].entry_id}
    assert all(isinstance(exc, UnknownIntentError) for exc in failed.values())

    row = await world.row(good)
    assert (row.state, row.step, row.channel) == (VALIDATED, "authorize", "INTERNAL_P2P")
    assert row.route == ("validate", "price", "reserve_limits", "authorize", "settle")
    assert [(f.rule_id, f.amount, f.timing) for f in row.fees] == [(f"pre-{payer}", 100, "PRE")]
    command = command_for(await world.commands(), good, "authorize")
    wallet_a, wallet_b = legs.wallet(payer, "THB").id, legs.wallet(payee, "THB").id
    fee_revenue = legs.operator(chart.Code.FEE_REVENUE, "THB").id
    linked, pending = int(tb.TransferFlags.LINKED), int(tb.TransferFlags.PENDING)
    assert [
        (t.id, t.debit_account_id, t.credit_account_id, t.amount, t.flags, t.timeout)
        for t in command.transfers
    ] == [
        (ids.transfer_id(good, "principal"), wallet_a, wallet_b, 10_000, pending | linked, TIMEOUT_S),
        (ids.transfer_id(good, f"fee:pre-{payer}"), wallet_a, fee_revenue, 100, pending, TIMEOUT_S),
    ]
    assert all(t.user_data_128 == uuid.UUID(good).int and t.ledger == 764 for t in command.transfers)

    failed_row = await world.row(no_wallet)
    assert failed_row.state == FAILED
    code = await world.pool.fetchval("SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(no_wallet))
    assert code == failures.ACCOUNT_NOT_FOUND
    assert await world.timeline(no_wallet) == [(CREATED, FAILED)]
    assert not [c for c in await world.commands() if c.intent_id == no_wallet]

    # The same messages again (a redelivery) change nothing and send nothing more.
    before = await world.commands()
    again = await world.saga.on_intents([submitted(good), submitted(no_wallet)])
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
    assert await world.saga.on_intents([submitted(intent_id)]) == {}
    row = await world.row(intent_id)
    assert row.state == FAILED
    reason = await world.pool.fetchval(
        "SELECT failure_code || ': ' || (SELECT reason FROM pm.intent_event WHERE intent_id = i.id"
        " ORDER BY id DESC LIMIT 1) FROM pm.intent i WHERE id = $1",
        uuid.UUID(intent_id),
    )
    assert reason.startswith(f"ROUTE_UNAVAILABLE: route {kind}/INTERNAL needs step(s) wrap_gift")
    assert not [c for c in await world.commands() if c.intent_id == intent_id]


# -- ledger results -------------------------------------------------------------------------------


async def test_results_settle_the_intent_once_whatever_their_order_and_repeats(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await add_fee(world, f"post-{payer}", "7", "POST", only_for=payer, payer="target")
    intent_id = await world.intent(payer, payee, 2_500)
    await world.saga.on_intents([submitted(intent_id)])
    authorize = command_for(await world.commands(), intent_id, "authorize")

    authorized = answer(authorize)
    assert await world.saga.on_results([authorized, authorized]) == {}  # a duplicate in the same batch
    assert (await world.row(intent_id)).state == AUTHORIZED
    settle = command_for(await world.commands(), intent_id, "settle")
    post, fee = settle.transfers
    assert post.pending_id == ids.transfer_id(intent_id, "principal") and post.amount == 2_500
    assert post.flags == int(tb.TransferFlags.POST_PENDING_TRANSFER | tb.TransferFlags.LINKED)
    assert (fee.debit_account_id, fee.amount, fee.flags) == (legs.wallet(payee, "THB").id, 7, 0)

    # The settle result, then the authorize result again (reordered): settled once.
    assert await world.saga.on_results([answer(settle), authorized]) == {}
    assert await world.saga.on_results([answer(settle)]) == {}
    row = await world.row(intent_id)
    assert (row.state, row.step) == (SETTLED, None)
    assert await world.timeline(intent_id) == [
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
    events = await world.redis.xrange("{pm:events:0}")
    states = [msgspec.json.decode(payload(f))["state"] for _, f in events or []]
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
    await world.saga.on_intents([submitted(first)])
    authorize = command_for(await world.commands(), first, "authorize")
    assert await world.saga.on_results([answer(authorize, ["EXCEEDS_CREDITS"])]) == {}
    row = await world.row(first)
    assert row.state == FAILED
    assert await world.pool.fetchval(
        "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(first)
    ) == (failures.INSUFFICIENT_FUNDS)
    # Nothing to void (the chain was refused whole) and the day's one payment is free again.
    assert not [c for c in await world.commands() if c.intent_id == first and c.step == "void"]
    second = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(second)])
    assert (await world.row(second)).state == VALIDATED
    third = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(third)])
    assert await world.pool.fetchval(
        "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(third)
    ) == (failures.LIMIT_EXCEEDED)


async def test_a_refused_settlement_voids_the_authorization(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await add_fee(world, f"post-{payer}", "50", "POST", only_for=payer)
    intent_id = await world.intent(payer, payee, 1_000)
    await world.saga.on_intents([submitted(intent_id)])
    await world.saga.on_results([answer(command_for(await world.commands(), intent_id, "authorize"))])
    settle = command_for(await world.commands(), intent_id, "settle")
    # The POST fee does not fit: the post in front of it fails with it.
    assert await world.saga.on_results([answer(settle, ["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"])]) == {}
    assert await world.pool.fetchval(
        "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
    ) == (failures.INSUFFICIENT_FUNDS)
    void = command_for(await world.commands(), intent_id, "void")
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


async def test_a_repeat_refused_as_already_failed_waits_for_the_first_answer(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(intent_id)])
    authorize = command_for(await world.commands(), intent_id, "authorize")
    await world.saga.on_results([answer(authorize, ["ID_ALREADY_FAILED"])])
    assert (await world.row(intent_id)).state == VALIDATED  # the first answer, with the reason, comes
    await world.pool.execute(
        "UPDATE pm.intent SET updated_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(intent_id)
    )
    await world.saga.on_results([answer(authorize, ["ID_ALREADY_FAILED"])])
    assert await world.pool.fetchval(
        "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
    ) == (failures.LEDGER_REJECTED)


async def test_a_resend_refused_as_already_failed_fails_at_once(world: World) -> None:
    # The resume sweep sends a command again only after the intent has not moved for a while: the
    # first answer is lost, so waiting out the grace would only leave the intent open.
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(intent_id)])
    authorize = command_for(await world.commands(), intent_id, "authorize")
    resent = msgspec.structs.replace(authorize, message_id=f"{intent_id}:authorize{RESEND_MARK}1")
    await world.saga.on_results([answer(resent, ["ID_ALREADY_FAILED"] * len(authorize.transfers))])
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
    await world.saga.on_intents([submitted(intent_id)])
    authorize = command_for(await world.commands(), intent_id, "authorize")
    delivery = answer(
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


# -- resume ---------------------------------------------------------------------------------------


async def test_the_resume_sweep_takes_in_and_resends_what_stalled(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    never_delivered = await world.intent(payer, payee)
    waiting = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(waiting)])
    first = command_for(await world.commands(), waiting, "authorize")
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=30, interval_s=10)

    resumed = await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))

    assert resumed >= 2
    assert (await world.row(never_delivered)).state == VALIDATED
    resent = [c for c in await world.commands() if c.intent_id == waiting and c.step == "authorize"]
    assert len(resent) == 2 and resent[1].message_id != first.message_id
    assert resent[1].transfers == first.transfers  # same ids: the ledger applies them at most once
    # A second sweep soon after does not send it again.
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    assert len([c for c in await world.commands() if c.intent_id == waiting and c.step == "authorize"]) == 2


# -- fee rules ------------------------------------------------------------------------------------


async def test_a_new_fee_rule_version_prices_the_next_intent(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    rule = f"flat-{payer}"
    await add_fee(world, rule, "10", "PRE", only_for=payer)
    first = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(first)])
    await add_fee(world, rule, "25", "PRE", only_for=payer)
    second = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(second)])
    assert [(f.rule_version, f.amount) for f in (await world.row(first)).fees if f.rule_id == rule] == [
        (1, 10)
    ]
    assert [(f.rule_version, f.amount) for f in (await world.row(second)).fees if f.rule_id == rule] == [
        (2, 25)
    ]


async def test_a_fee_rule_that_errors_fails_the_intent_with_its_code(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    await add_fee(
        world, f"broken-{payer}", "intent.metadata['missing'] == 'x' ? 1 : 2", "PRE", only_for=payer
    )
    intent_id = await world.intent(payer, payee)
    assert await world.saga.on_intents([submitted(intent_id)]) == {}
    assert await world.pool.fetchval(
        "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
    ) == ("FEE_RULE_ERROR")


# -- the ledger's own word on expiry ----------------------------------------------------------------


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
        await world.saga.on_intents([submitted(intent_id)])
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
        plan = planner.result(authorized, answer(command, statuses).message)
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


def test_the_command_id_of_a_step_is_stable_and_its_transfers_deterministic() -> None:
    row = IntentRow(
        id=str(uuid.uuid4()), type="P2P", state=VALIDATED, step="authorize", channel="INTERNAL_P2P",
        route=("validate", "authorize", "settle"), amount=100, currency="THB",
        source=Side("user", "a"), target=Side("user", "b"), from_name=None, to_name=None, comment=None,
        requires_monitoring=False,
        metadata={}, fees=(), created_at=datetime.now(UTC), updated_at=datetime.now(UTC),
    )  # fmt: skip
    first = Planner(default_registry(), 60, 30).resend(row)
    second = Planner(default_registry(), 60, 30).resend(row)
    assert first is not None and second is not None
    assert isinstance(first.message, LedgerCommand) and isinstance(second.message, LedgerCommand)
    assert first.stream == second.stream == "pm:ledger:commands"
    assert first.message.transfers == second.message.transfers
    assert first.message.transfers[0].flags == int(tb.TransferFlags.PENDING)  # one leg: no chain


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
    assert await saga.on_intents([submitted(intent_id)]) == {}
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


async def test_a_command_nobody_answers_is_resent_a_bounded_number_of_times(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([submitted(intent_id)])
    # resume_after_s=0: every sweep finds it stalled again, as if each resend were dead-lettered.
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=0.0001, interval_s=10)
    for _ in range(MAX_RESENDS + 3):
        await asyncio.sleep(0.001)
        await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    sent = [c for c in await world.commands() if c.intent_id == intent_id and c.step == "authorize"]
    assert len(sent) == 1 + MAX_RESENDS  # the first command, then MAX_RESENDS resends, then none
    assert (await world.row(intent_id)).state == VALIDATED
    assert intent_id in resumer._resends
    # Once it moves on, a sweep forgets it (the counts do not pile up for the life of the process).
    await world.pool.execute(
        "UPDATE pm.intent SET state = 'FAILED', failure_code = 'X', step = NULL WHERE id = $1",
        uuid.UUID(intent_id),
    )
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    assert intent_id not in resumer._resends
