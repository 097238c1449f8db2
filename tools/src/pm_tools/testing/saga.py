"""Support for the saga's end-to-end tests (tests/test_saga.py): a fleet of real processes on a database
of its own, service keys, and readers of what happened (intent rows, the embedded ledger).

Everything a test does to PM goes through the gateway over signed HTTP; what it checks afterwards it
reads both through the API and straight from PostgreSQL and the ledger, so a projection that lies
(a history row, a balance) cannot hide a ledger that disagrees.

Test support only: it imports pytest (a development dependency).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import pytest
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_client import api as http_api
from pm_client.api import TERMINAL_STATES
from pm_client.client import PMAuth, PMClient, PMError
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.streams.connection import as_str, connect
from pm_tools.testing.db import new_database_url, run
from pm_tools.testing.fixtures import test_redis_url
from pm_tools.testing.fleet import KEY_ENCRYPTION_KEY, Fleet, Proc, delete_streams
from pm_tools.testing.gateway import PROXY_SECRET

STREAMS = ("pm:intents", "pm:events", "pm:ledger:commands", "pm:ledger:results", "pm:psp:results")
CURRENCY: Final = "THB"
LEDGER = chart.ledger_of(CURRENCY)
FEE_REVENUE = ids.account_id("operator", "fee_revenue", LEDGER, int(chart.Code.FEE_REVENUE))

# Shorter timers than production, so a SIGKILLed process's work is taken over within seconds, not
# half a minute: the reclaim of a dead consumer's entries, the writer's lease, the resume sweep; and
# the orchestrator looks for changed rules every 0.2 s (1 s in production), so a test waits that
# much less before the intent that must see a new rule.
RULES_REFRESH_ENV = {"PM_ORCHESTRATOR_RULES_REFRESH_S": "0.2"}
RECOVERY_ENV = {
    "PM_STREAM_LEASE_MS": "8000",
    "PM_STREAM_CLAIM_INTERVAL_MS": "1000",
    "PM_ORCHESTRATOR_RESUME_AFTER_S": "20",
    "PM_ORCHESTRATOR_RESUME_INTERVAL_S": "5",
    **RULES_REFRESH_ENV,
}
WRITER_LEASE_MS = "4000"
RULES_SETTLE_S = 0.5
"""From a rule change to the first intent that must see it: an orchestrator started with
`RULES_REFRESH_ENV` looks for changed rules every 0.2 s before a batch, so any batch that starts this
long after the change has looked since."""


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: str


@dataclass
class SagaFleet:
    """The running fleet of one test module: gateway, orchestrator, ledger-writer (and reconciler)."""

    fleet: Fleet
    lease_key: str
    admin: Key
    """All intent types, any owner, admin routes."""
    user: Key
    """P2P and PROMPTPAY_WITHDRAWAL for any owner; no ADJUSTMENT, no admin routes."""
    gateway: Proc
    orchestrator: Proc
    writer: Proc

    @property
    def database_url(self) -> str:
        return self.fleet.database_url

    @property
    def url(self) -> str:
        return self.gateway.url("")

    def client(self, key: Key, *, connections: int = 10) -> PMClient:
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=connections))
        return PMClient(self.url, key.key_id, key.secret, timeout=40.0, transport=transport)

    def http(self, key: Key) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, auth=PMAuth(key.key_id, key.secret), timeout=40.0)

    def start_orchestrator(self) -> Proc:
        self.orchestrator = self.fleet.start("orchestrator", env=RECOVERY_ENV)
        return self.orchestrator

    def start_writer(self) -> Proc:
        env = {
            **RECOVERY_ENV,
            "PM_LEDGER_WRITER_LEASE_KEY": self.lease_key,
            "PM_LEDGER_WRITER_LEASE_MS": WRITER_LEASE_MS,
        }
        self.writer = self.fleet.start("ledger-writer", env=env)
        return self.writer

    def logged(self, *levels: str) -> list[dict[str, Any]]:
        """Log records of every process started so far at these levels (WARNING and above by default)."""
        wanted = set(levels or ("WARNING", "ERROR", "CRITICAL"))
        return [
            {"proc": f"{p.name}:{p.consumer}", **r}
            for p in self.fleet.procs
            for r in p.records()
            if r.get("level") in wanted
        ]

    def about(self, intent_id: str) -> list[dict[str, Any]]:
        """Every log record that names this intent, of every process (for failure messages)."""
        return [
            {"proc": f"{p.name}:{p.consumer}", **r}
            for p in self.fleet.procs
            for r in p.records()
            if r.get("intent_id") == intent_id or intent_id in str(r.get("msg", ""))
        ]


def new_lease_key() -> str:
    """A writer lease of the module's own, so a writer of another test never stands in its way."""
    return f"test:saga:ledger-writer:lease:{uuid.uuid4().hex[:8]}"


async def start(fleet: Fleet, redis: Redis, lease_key: str) -> SagaFleet:
    """Clean this module's streams, start the fleet on `fleet`'s database and make its two keys."""
    await delete_streams(redis, *STREAMS)
    saga = SagaFleet(
        fleet,
        lease_key,
        Key("", ""),
        Key("", ""),
        gateway=fleet.start("gateway", env={"PM_GATEWAY_PROXY_SECRET": PROXY_SECRET}),
        orchestrator=fleet.start("orchestrator", env=RECOVERY_ENV),
        writer=fleet.start(
            "ledger-writer",
            env={
                **RECOVERY_ENV,
                "PM_LEDGER_WRITER_LEASE_KEY": lease_key,
                "PM_LEDGER_WRITER_LEASE_MS": WRITER_LEASE_MS,
            },
        ),
    )
    # The reconciler drains pm:events: without it the events stream would fill up to its
    # back-pressure threshold during the big run and the fleet would not be the fleet PM runs.
    reconciler = fleet.start("reconciler")
    # The other reader of pm:events; tests' webhook receivers listen on loopback.
    webhooks = fleet.start("webhooks", env={"PM_WEBHOOKS_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128"})
    for proc in (saga.writer, saga.orchestrator, saga.gateway, reconciler, webhooks):
        await proc.wait_ready()
    conn = await db.connect(fleet.database_url)
    try:
        cipher = Cipher.from_setting(KEY_ENCRYPTION_KEY)
        admin, admin_secret = await create_key(
            conn,
            cipher,
            permissions=Permissions(operations=frozenset({"*"}), owners=None, admin=True),
            description="saga tests: admin",
        )
        user, user_secret = await create_key(
            conn,
            cipher,
            permissions=Permissions(operations=frozenset({"P2P", "PROMPTPAY_WITHDRAWAL"}), owners=None),
            description="saga tests: user payments",
        )
    finally:
        await conn.close()
    saga.admin = Key(admin.key_id, admin_secret)
    saga.user = Key(user.key_id, user_secret)
    return saga


async def stop(fleet: Fleet, redis: Redis, lease_key: str) -> None:
    """Kill every process (pass or fail), then leave the test Redis database as it was found."""
    fleet.kill_all()
    await fleet.forget_consumers(redis)
    await delete_streams(redis, *STREAMS)
    await redis.delete(lease_key)


@contextmanager
def module_saga(workdir: Path, *, streams: Sequence[str] = ()) -> Iterator[SagaFleet]:
    """A test module's fleet (`start`) on a database of its own, migrated first and dropped at the
    end, every process killed; `streams`, the module's other streams, are cleaned before and after."""
    url = new_database_url()

    async def create() -> None:
        await db.ensure_database(url)
        await db.migrate(url)

    run(create())
    fleet = Fleet(test_redis_url(), url, workdir)
    lease_key = new_lease_key()

    async def up() -> SagaFleet:
        redis = connect(test_redis_url())
        try:
            await delete_streams(redis, *streams)
            return await start(fleet, redis, lease_key)
        finally:
            await redis.aclose()

    async def down() -> None:
        redis = connect(test_redis_url())
        try:
            await stop(fleet, redis, lease_key)
            await delete_streams(redis, *streams)
        finally:
            await redis.aclose()

    try:
        yield run(up())
    finally:
        run(down())
        run(db.drop_database(url, force=True))


# --- talking to the gateway -------------------------------------------------------------------------


async def open_wallet(pm: PMClient, owner_id: str, *, wait_s: float = 30.0) -> None:
    """Open `owner_id`'s THB wallet; a 202 (the writer has not opened it yet) is asked again."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            await pm.open_wallet(owner_id, CURRENCY)
            return
        except PMError as exc:
            if exc.status != 202:
                raise
        if time.monotonic() > deadline:
            pytest.fail(f"wallet {owner_id} still not open after {wait_s}s")
        await asyncio.sleep(0.1)


def p2p(
    payer: str, payee: str, amount: int, *, from_name: str = "", to_name: str = "", comment: str = ""
) -> http_api.CreateIntent:
    return http_api.CreateIntent(
        type="P2P",
        amount=amount,
        currency=CURRENCY,
        from_=http_api.UserParty(id=payer),
        to=http_api.UserParty(id=payee),
        from_name=from_name or None,
        to_name=to_name or None,
        comment=comment or None,
    )


def adjustment(owner_id: str, amount: int, *, credit: bool = True) -> http_api.CreateIntent:
    """Operator equity → the user's wallet (credit), or the reverse."""
    user: http_api.Party = http_api.UserParty(id=owner_id)
    operator: http_api.Party = http_api.OperatorParty()
    return http_api.CreateIntent(
        type="ADJUSTMENT",
        amount=amount,
        currency=CURRENCY,
        from_=operator if credit else user,
        to=user if credit else operator,
        from_name="PM operator" if credit else None,
        to_name=None if credit else "PM operator",
        comment="saga test funding" if credit else "saga test debit",
    )


async def run_intent(pm: PMClient, body: http_api.CreateIntent, *, timeout: float = 30.0) -> http_api.Intent:
    """Submit `body` and follow it until it is terminal; fails the test when it is not within `timeout`."""
    created = await pm.create_intent(body, idempotency_key=uuid.uuid4().hex)
    assert created.status == "CREATED", created
    intent = await pm.wait_intent(created.id, timeout=timeout)
    assert intent.status in TERMINAL_STATES, f"intent {intent.id} still {intent.status} after {timeout}s"
    return intent


async def fund(pm: PMClient, owner_id: str, amount: int) -> http_api.Intent:
    """Credit `amount` to `owner_id` (an ADJUSTMENT, admin key) and check that it settled."""
    intent = await run_intent(pm, adjustment(owner_id, amount))
    assert (intent.status, intent.failure_code) == ("SETTLED", None), intent
    return intent


async def admin_post(http: httpx.AsyncClient, path: str, body: msgspec.Struct) -> dict[str, Any]:
    """POST a rule to an admin route; fails the test unless the gateway answers 201."""
    response = await http.post(
        path, content=msgspec.json.encode(body), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201, (path, response.status_code, response.text)
    answer: dict[str, Any] = response.json()
    return answer


def history_rows(page: http_api.HistoryPage, intent_id: str) -> list[tuple[object, ...]]:
    """The history rows of one intent: direction, type, amount, currency, fee, counterparty, comment."""
    return [
        (h.direction, h.type, h.amount, h.currency, h.fee, h.counterparty_name, h.comment)
        for h in page.items
        if h.intent_id == intent_id
    ]


async def thb_balance(pm: PMClient, owner_id: str) -> http_api.Balance:
    wallet = await pm.get_wallet(owner_id)
    (balance,) = [b for b in wallet.balances if b.currency == CURRENCY]
    return balance


# --- rules, names and balances of one test ---------------------------------------------------------


@dataclass
class Clients:
    admin: PMClient
    """Signed with the admin key: ADJUSTMENT intents."""
    user: PMClient
    """Signed with the user key: payments."""
    http: httpx.AsyncClient
    """Signed with the admin key, for the admin routes the client has no method for."""


def names(test: str) -> str:
    """A prefix for one test run's users and rules: `t1-3fa9c2`."""
    return f"{test}-{uuid.uuid4().hex[:6]}"


def only_payer(*owner_ids: str) -> str:
    """CEL: the intent is paid by one of these users."""
    ids_ = ", ".join(f'"{o}"' for o in owner_ids)
    return f'intent.source.kind == "user" && intent.source.id in [{ids_}]'


async def fee_rule(clients: Clients, **fields: object) -> dict[str, object]:
    return await admin_post(clients.http, "/v1/admin/fee-rules", http_api.FeeRuleIn(**fields))  # type: ignore[arg-type]


async def limit_rule(clients: Clients, **fields: object) -> dict[str, object]:
    body = http_api.LimitRuleIn(operation_type="P2P", currency=CURRENCY, subject_kind="user", **fields)  # type: ignore[arg-type]
    return await admin_post(clients.http, "/v1/admin/limit-rules", body)


async def settle_rules(since: float) -> None:
    """Wait until the orchestrator has certainly reloaded rules installed at `since` (monotonic)."""
    await asyncio.sleep(max(0.0, since + RULES_SETTLE_S - time.monotonic()))


async def fee_revenue(saga: SagaFleet) -> int:
    found = await accounts(saga.database_url, [FEE_REVENUE])
    return posted(found[FEE_REVENUE]) if FEE_REVENUE in found else 0


async def ledger_wallets(saga: SagaFleet, *owner_ids: str) -> dict[str, tuple[int, int, int]]:
    """(posted, debits_pending, credits_pending) of each user's wallet, straight from the ledger."""
    found = await accounts(saga.database_url, [wallet_id(o) for o in owner_ids])
    out: dict[str, tuple[int, int, int]] = {}
    for owner in owner_ids:
        account = found[wallet_id(owner)]
        out[owner] = (posted(account), int(account.debits_pending), int(account.credits_pending))
    return out


async def api_wallets(pm: PMClient, *owner_ids: str) -> dict[str, tuple[int, int, int]]:
    """(posted, pending, available) of each user's THB balance, through the gateway."""
    out: dict[str, tuple[int, int, int]] = {}
    for owner in owner_ids:
        balance = await thb_balance(pm, owner)
        out[owner] = (balance.posted, balance.pending, balance.available)
    return out


async def check_balances(saga: SagaFleet, pm: PMClient, expected: dict[str, int]) -> None:
    """Each wallet holds exactly `expected` (posted), nothing pending: through the API and on the ledger."""
    assert await api_wallets(pm, *expected) == {o: (v, 0, v) for o, v in expected.items()}
    assert await ledger_wallets(saga, *expected) == {o: (v, 0, 0) for o, v in expected.items()}


async def nothing_posted(saga: SagaFleet, intent: http_api.Intent) -> None:
    """No leg of the intent moved money, in either shape: no post of a pending leg (two phases) and no
    plain transfer (a POST fee; any leg of one round trip). A pending leg itself may be left to a void."""
    names = ["principal", *(f"fee:{f.rule_id}" for f in intent.fees)]
    wanted = [ids.transfer_id(intent.id, n) for n in [*names, *(f"{n}:post" for n in names)]]
    found = await transfers(saga.database_url, wanted)
    moved = {i: t for i, t in found.items() if not t.flags & tb.TransferFlags.PENDING}
    assert moved == {}, (intent.id, moved)


def states(intent: http_api.Intent) -> list[str]:
    return [e.state for e in intent.timeline]


def failed(intent: http_api.Intent, code: str) -> bool:
    return intent.status == "FAILED" and intent.failure_code == code


# --- the ledger ------------------------------------------------------------------------------------


def wallet_id(owner_id: str) -> int:
    return ids.account_id("user", owner_id, LEDGER, int(chart.Code.USER_WALLET))


async def accounts(database_url: str, account_ids: Sequence[int]) -> dict[int, tb.Account]:
    """The embedded ledger's accounts with these ids (missing ones left out)."""
    ledger = await open_ledger("embedded+" + database_url, readonly=True)
    try:
        found: dict[int, tb.Account] = {}
        for start_at in range(0, len(account_ids), 8000):
            for account in await ledger.lookup_accounts(list(account_ids[start_at : start_at + 8000])):
                found[account.id] = account
        return found
    finally:
        await ledger.close()


async def transfers(database_url: str, transfer_ids: Sequence[int]) -> dict[int, tb.Transfer]:
    """The embedded ledger's transfers with these ids (missing ones left out)."""
    ledger = await open_ledger("embedded+" + database_url, readonly=True)
    try:
        found: dict[int, tb.Transfer] = {}
        for start_at in range(0, len(transfer_ids), 8000):
            for transfer in await ledger.lookup_transfers(list(transfer_ids[start_at : start_at + 8000])):
                found[transfer.id] = transfer
        return found
    finally:
        await ledger.close()


def posted(account: tb.Account) -> int:
    return int(account.credits_posted) - int(account.debits_posted)


# --- PostgreSQL ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IntentRow:
    id: str
    type: str
    state: str
    failure_code: str | None
    amount: int
    source: dict[str, Any]
    target: dict[str, Any]
    fees: list[dict[str, Any]]

    def fee_total(self) -> int:
        return sum(int(f["amount"]) for f in self.fees)


def _json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


async def intent_rows(database_url: str, intent_ids: Iterable[str] | None = None) -> dict[str, IntentRow]:
    """pm.intent rows by id: these ones, or every row when `intent_ids` is None."""
    sql = "SELECT id::text, type, state, failure_code, amount, source, target, fees FROM pm.intent"
    conn = await db.connect(database_url)
    try:
        if intent_ids is None:
            rows = await conn.fetch(sql)
        else:
            rows = await conn.fetch(sql + " WHERE id = ANY($1::uuid[])", list(intent_ids))
    finally:
        await conn.close()
    return {
        r["id"]: IntentRow(
            r["id"],
            r["type"],
            r["state"],
            r["failure_code"],
            int(r["amount"]),
            _json(r["source"]),
            _json(r["target"]),
            _json(r["fees"]),
        )
        for r in rows
    }


def expected_wallets(rows: Iterable[IntentRow]) -> Counter[str]:
    """What the SETTLED intents among `rows` leave on each user's wallet: in - out - fees it paid."""
    out: Counter[str] = Counter()
    for row in rows:
        if row.state != "SETTLED":
            continue
        source = row.source.get("id") if row.source.get("kind") == "user" else None
        target = row.target.get("id") if row.target.get("kind") == "user" else None
        if source:
            out[source] -= row.amount
        if target:
            out[target] += row.amount
        for fee in row.fees:
            payer = source if fee.get("payer", "source") == "source" else target
            if payer:
                out[payer] -= int(fee["amount"])
    return out


async def fetch(database_url: str, sql: str, *args: object) -> list[dict[str, Any]]:
    conn = await db.connect(database_url)
    try:
        return [dict(r) for r in await conn.fetch(sql, *args)]
    finally:
        await conn.close()


async def group_state(redis: Redis, key: str, group: str) -> tuple[str, int]:
    """(last-delivered-id, pending) of `group` on stream `key`."""
    for g in await redis.xinfo_groups(key):
        if as_str(g["name"]) == group:
            return as_str(g["last-delivered-id"]), int(g["pending"])
    raise AssertionError(f"no group {group} on {key}")
