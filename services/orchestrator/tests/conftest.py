"""Fixtures of the saga's tests in this process: a migrated PostgreSQL database of each test module's
own, real Redis, and `World`: the saga on both, with the intents, wallets and rules a test sets up and
what it reads back (intents, timelines, ledger commands, PSP jobs and results, alerts).

Ledger and PSP results are built here, not produced: the ledger-writer and the adapters are tested on
their own, and tests/test_saga.py and tests/test_psp.py run the whole fleet. Test modules annotate
the fixture with `World` imported under `TYPE_CHECKING` only (test modules import no conftest at run
time: pytest runs with `--import-mode=importlib`).
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from pm_orchestrator.plan import Planner
from pm_orchestrator.rules import Rules
from pm_orchestrator.saga import Saga
from pm_orchestrator.steps import default_registry
from pm_shared import db
from pm_shared.db import Pool
from pm_shared.fees import FeeRule, insert_rule
from pm_shared.intents.record import IntentRow
from pm_shared.ledger import accounts, chart
from pm_shared.messages import (
    IntentSubmitted,
    LedgerCommand,
    LedgerEventResult,
    LedgerResult,
    Party,
    PspJob,
    PspResult,
    new_message_id,
    now,
)
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.names import IPPS_JOBS, PSP_RESULTS, QP_JOBS
from pm_shared.streams.provision import provision
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing.db import new_database_url
from pm_tools.testing.fleet import delete_streams

STREAMS = ("pm:intents", "pm:ledger:commands", "pm:ledger:results", "pm:events", *(
    s.name for s in (IPPS_JOBS, QP_JOBS, PSP_RESULTS)
))  # fmt: skip
PENDING_TIMEOUT_S = 900
PROXY = {"kind": "promptpay", "proxyType": "MSISDN", "proxyValue": "0812345678"}
"""The payee of a withdrawal, as the API takes it."""
TWO_PHASE_P2P = ("validate", "price", "reserve_limits", "authorize", "settle")
"""P2P's route before migration 0021 moved it to `transfer` (one round trip), and still one an operator
may set: the modules that test two-phase mechanics (authorize, settle, void, expiry) on P2P intents
use it (`two_phase_p2p`), as MINIAPP_CHARGE and P2Ps taken in before 0021 still go that way."""


@pytest.fixture(scope="module")
def saga_db() -> Iterator[str]:
    """A migrated database for the test module, dropped after it."""
    url = new_database_url()
    asyncio.run(_create(url))
    yield url
    asyncio.run(db.drop_database(url, force=True))


async def _create(url: str) -> None:
    await db.ensure_database(url)
    await db.migrate(url)


def payload(fields: object) -> bytes:
    """The message of a stream entry's fields."""
    assert isinstance(fields, dict)
    value = fields[PAYLOAD_FIELD]
    assert isinstance(value, bytes)
    return value


@dataclass
class World:
    pool: Pool
    redis: Redis
    saga: Saga
    planner: Planner
    key_id: str

    # -- what a test sets up ----------------------------------------------------------------------

    async def wallets(self, *users: str, currency: str = "THB") -> None:
        async with self.pool.acquire() as conn:
            specs = [chart.AccountSpec("user", u, currency, chart.Code.USER_WALLET) for u in users]
            await accounts.record_opened(conn, specs)

    async def new_intent(
        self,
        type_: str,
        source: dict[str, Any],
        target: dict[str, Any],
        amount: int,
        currency: str,
        *,
        comment: str,
        names: tuple[str | None, str | None] = (None, None),
        created_at: datetime | None = None,
    ) -> str:
        """A CREATED intent as the gateway records it; `names` are the payer's and the payee's."""
        intent_id = str(uuid.uuid4())
        await self.pool.execute(
            """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, amount,
                                      currency, source, target, from_name, to_name, comment, created_at)
               VALUES ($1, $2, $3, '\\x00', $4, 'CREATED', $5, $6, $7::jsonb, $8::jsonb, $9, $10, $11,
                       $12)""",
            uuid.UUID(intent_id),
            self.key_id,
            intent_id,
            type_,
            amount,
            currency,
            msgspec.json.encode(source).decode(),
            msgspec.json.encode(target).decode(),
            *names,
            comment,
            created_at or datetime.now(UTC),
        )
        return intent_id

    async def intent(
        self,
        source: str | None,
        target: str | None,
        amount: int = 10_000,
        type_: str = "P2P",
        created_at: datetime | None = None,
    ) -> str:
        """A THB intent between two users (None: the operator), from Payer to Payee for the rent."""
        src = {"kind": "user", "id": source} if source else {"kind": "operator"}
        dst = {"kind": "user", "id": target} if target else {"kind": "operator"}
        return await self.new_intent(
            type_, src, dst, amount, "THB", comment="rent", names=("Payer", "Payee"), created_at=created_at
        )

    async def withdrawal(self, amount: int = 10_000) -> tuple[str, str]:
        """A new payer with a wallet, and its PROMPTPAY_WITHDRAWAL to PROXY."""
        payer = f"u-{secrets.token_hex(4)}"
        await self.wallets(payer, currency="THB")
        return payer, await self.new_intent(
            "PROMPTPAY_WITHDRAWAL", {"kind": "user", "id": payer}, PROXY, amount, "THB", comment="cash out"
        )

    async def topup(self, amount: int = 50_000) -> tuple[str, str]:
        """A new payee with a RUB wallet, and its SBP_TOPUP."""
        payee = f"u-{secrets.token_hex(4)}"
        await self.wallets(payee, currency="RUB")
        return payee, await self.new_intent(
            "SBP_TOPUP", {"kind": "sbp"}, {"kind": "user", "id": payee}, amount, "RUB", comment="cash out"
        )

    async def add_fee(
        self, rule_id: str, amount: str, timing: str, *, only_for: str, payer: str = "source"
    ) -> None:
        """A fee rule for P2P intents paid by `only_for` (a module's tests share one database)."""
        async with self.pool.acquire() as conn:
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

    async def route(self, operation_type: str, steps: Sequence[str]) -> None:
        """Set the route of `operation_type` (the saga reloads routes on its next batch)."""
        await self.pool.execute(
            "UPDATE pm.payment_route SET steps = $2, updated_at = clock_timestamp()"
            " WHERE operation_type = $1",
            operation_type,
            list(steps),
        )

    # -- what a test reads back -------------------------------------------------------------------

    async def row(self, intent_id: str) -> IntentRow:
        record = await self.pool.fetchrow(
            "SELECT id, type, state, step, channel, route, amount, currency, source, target, from_name,"
            " to_name, comment, requires_monitoring, metadata, fees, created_at, updated_at, payment,"
            " exchange"
            " FROM pm.intent WHERE id = $1",
            uuid.UUID(intent_id),
        )
        assert record is not None
        return IntentRow.from_record(record)

    async def failure_code(self, intent_id: str) -> str | None:
        code = await self.pool.fetchval(
            "SELECT failure_code FROM pm.intent WHERE id = $1", uuid.UUID(intent_id)
        )
        return str(code) if code is not None else None

    async def timeline(self, intent_id: str) -> list[tuple[str | None, str, str]]:
        """The intent's moves with their reasons, oldest first."""
        rows = await self.pool.fetch(
            "SELECT from_state, to_state, reason FROM pm.intent_event WHERE intent_id = $1 ORDER BY id",
            uuid.UUID(intent_id),
        )
        return [(r["from_state"], r["to_state"], r["reason"]) for r in rows]

    async def moves(self, intent_id: str) -> list[tuple[str | None, str]]:
        """The intent's moves, oldest first: (from state, to state)."""
        return [(f, t) for f, t, _ in await self.timeline(intent_id)]

    async def commands(self, intent_id: str | None = None) -> list[LedgerCommand]:
        """The ledger commands sent (for `intent_id` only, when given), oldest first."""
        entries = await self.redis.xrange("{pm:ledger:commands:0}") or []
        found = [msgspec.json.decode(payload(f), type=LedgerCommand) for _, f in entries]
        return [c for c in found if intent_id is None or c.intent_id == intent_id]

    async def command(self, intent_id: str, step: str) -> LedgerCommand:
        """The one ledger command sent for the intent's `step`."""
        commands = await self.commands()
        found = [c for c in commands if c.intent_id == intent_id and c.step == step]
        assert len(found) == 1, [(c.intent_id, c.step) for c in commands]
        return found[0]

    async def events(self) -> list[dict[str, Any]]:
        """The intent events published, oldest first."""
        entries = await self.redis.xrange("{pm:events:0}") or []
        return [msgspec.json.decode(payload(f)) for _, f in entries]

    async def jobs(self, intent_id: str, stream: str) -> list[PspJob]:
        entries = await self.redis.xrange(f"{{{stream}:0}}") or []
        found = [msgspec.json.decode(payload(f), type=PspJob) for _, f in entries]
        return [j for j in found if j.intent_id == intent_id]

    async def results(self, intent_id: str) -> list[PspResult]:
        entries = await self.redis.xrange("{pm:psp:results:0}") or []
        found = [msgspec.json.decode(payload(f), type=PspResult) for _, f in entries]
        return [r for r in found if r.intent_id == intent_id]

    async def alerts(self, kind: str) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT * FROM pm.reconciliation_alert WHERE kind = $1 ORDER BY id", kind
        )
        return [dict(r) for r in rows]

    # -- messages delivered to the saga -----------------------------------------------------------

    @staticmethod
    def delivery(key: str, message: Any, suffix: str = "0") -> Delivery[Any]:
        """`message` as read from the stream partition `key`, on its first delivery."""
        return Delivery(entry_id=f"{secrets.randbelow(10**9)}-{suffix}", key=key, message=message, attempt=1)

    @staticmethod
    def submitted(intent_id: str) -> Delivery[IntentSubmitted]:
        """The gateway's word that `intent_id` was recorded (the saga reads the rest from its row)."""
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
        return World.delivery("{pm:intents:0}", message)

    @staticmethod
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
        return World.delivery("{pm:ledger:results:0}", result, suffix="1")

    async def take_in(self, intent_id: str) -> None:
        """The saga takes the intent in, failing no message."""
        assert await self.saga.on_intents([self.submitted(intent_id)]) == {}

    async def ledger_answers(self, command: LedgerCommand, statuses: Sequence[str] | None = None) -> None:
        """The saga gets the ledger's answer to `command` (see `answer`), failing no message."""
        assert await self.saga.on_results([self.answer(command, statuses)]) == {}

    async def psp_answers(self, job: PspJob, status: str, **fields: Any) -> dict[str, BaseException]:
        """The saga gets the PSP adapter's result of `job`; the messages it failed."""
        result = PspResult(
            intent_id=job.intent_id, message_id=new_message_id(), produced_at=now(), psp=job.psp,
            job_id=job.message_id, status=status, **fields,
        )  # fmt: skip
        return await self.saga.on_psp_results([self.delivery("{pm:psp:results:0}", result)])


@pytest.fixture
async def world(saga_db: str, redis: Redis) -> AsyncIterator[World]:
    """The saga on the module's database and emptied, provisioned streams; a service key of its own."""
    await delete_streams(redis, *STREAMS)
    await provision(redis, 1)
    pool = await db.create_pool(saga_db, max_size=4)
    key_id = f"pk_{secrets.token_hex(12)}"
    await pool.execute(
        "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, 'x', $2::jsonb)",
        key_id,
        '{"operations": ["*"], "owners": null, "admin": true}',
    )
    planner = Planner(default_registry(), PENDING_TIMEOUT_S, already_failed_grace_s=120.0)
    saga = Saga(pool, Publisher(redis), Rules(redis, pool, refresh_s=0), planner, "standard")
    try:
        yield World(pool, redis, saga, planner, key_id)
    finally:
        await pool.close()
        await delete_streams(redis, *STREAMS)


@pytest.fixture
async def two_phase_p2p(world: World) -> World:
    """The world with P2P on its two-phase route (`TWO_PHASE_P2P`)."""
    await world.route("P2P", TWO_PHASE_P2P)
    return world
