"""Several replicas of each service at once, over P = 4 stream partitions (issue 20, item 5).

One fleet of real processes for the module, on a database of its own: two gateways, two
orchestrators, two adapter-ipps, two adapter-qp, the reconciler and the webhooks service, both PSP
sandboxes, and two ledger-writers of which exactly one is active (the writer is single by design; the
other stands by on its lease). Every process runs with `PM_STREAM_PARTITIONS=4` and a 2 s stream
lease. P2P payments, PromptPay withdrawals (IPPS) and SBP top-ups (QP; its sandbox pays every new QR
by itself) go in through both gateways. What is checked afterwards:

- every intent SETTLED, every wallet exact on the ledger, through the API and in PM's projection;
- each step handled once: one ledger command per intent and step, one ledger answer per command,
  one PSP job per intent, one payment per intent at each sandbox, and each intent's timeline exactly
  its route's states, no transition twice (`pm.intent_event`);
- every replica did work (its `pm_stream_messages_total{outcome="ack"}` on its streams is > 0);
- a scale-down mid-run: one orchestrator stopped with SIGTERM while intents flow and a third started;
  the stopped one exits 0, what it still held is taken over within the lease, every intent settles once.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import random
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_client import api as http_api
from pm_client.api import TERMINAL_STATES
from pm_client.client import PMClient, PMError
from pm_shared import db
from pm_shared import fleet as roster
from pm_shared.fleet import IPPS_SANDBOX, QP_SANDBOX
from pm_shared.ledger import chart, ids
from pm_shared.streams.connection import as_str, connect
from pm_shared.streams.names import stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing import fixtures
from pm_tools.testing.db import new_database_url, run
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, Proc, delete_streams, get, sample_value, samples, streams_of
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.psp import ADAPTER_QP_ENV, PSP_STREAMS, QP_SECRET, Psp, start_psps
from pm_tools.testing.saga import (
    RECOVERY_ENV,
    STREAMS,
    WRITER_LEASE_MS,
    SagaFleet,
    accounts,
    expected_wallets,
    fetch,
    intent_rows,
    new_lease_key,
    posted,
    start,
)
from pm_tools.testing.saga_load import check_ledgers_balance, in_parallel, nothing_pending

pytestmark = pytest.mark.slow

PARTITIONS = 4
LEASE_MS = 2_000
CLAIM_INTERVAL_MS = 500
SCALE_ENV = {
    "PM_STREAM_PARTITIONS": str(PARTITIONS),
    "PM_STREAM_LEASE_MS": str(LEASE_MS),
    "PM_STREAM_CLAIM_INTERVAL_MS": str(CLAIM_INTERVAL_MS),
    # Far beyond a test's length: what a stopped orchestrator held must come back through the
    # streams' reclaim, not through the resume sweep of stalled intents.
    "PM_ORCHESTRATOR_RESUME_AFTER_S": "300",
}
MEMBER_ENV = {
    QP_SANDBOX.name: {"PM_QP_SANDBOX_AUTO_PAY": "accept", "PM_QP_SANDBOX_AUTO_PAY_DELAY_MS": "200"},
    IPPS_SANDBOX.name: {"PM_IPPS_SANDBOX_INQUIRY_TTL_S": "60"},
}
"""Per member, over its own: the QP sandbox's payer pays every new QR by itself; an IPPS inquiry lives
long enough for a loaded machine to confirm it (the PSP tests' 2 s would expire some here)."""

ALL_STREAMS = (*STREAMS, *PSP_STREAMS)
ORCHESTRATOR_STREAMS = streams_of(roster.member("orchestrator"))
THB, RUB = "THB", "RUB"
MOBILE = "0812345678"
# The timeline of each route, as its states in order: a withdrawal's payout is a move within
# AUTHORIZED; a top-up's QR shown, then paid, are two moves within VALIDATED.
TIMELINES = {
    "P2P": ["CREATED", "VALIDATED", "AUTHORIZED", "SETTLED"],
    "PROMPTPAY_WITHDRAWAL": ["CREATED", "VALIDATED", "AUTHORIZED", "AUTHORIZED", "SETTLED"],
    "SBP_TOPUP": ["CREATED", "VALIDATED", "VALIDATED", "VALIDATED", "SETTLED"],
}


@dataclass
class ScaledFleet(Fleet):
    """A `Fleet` whose every process gets the partitions and the short lease (`SCALE_ENV`, over what
    the caller asks) and its member's `MEMBER_ENV`."""

    def start(self, name: str, *, redis_url: str | None = None, env: dict[str, str] | None = None) -> Proc:
        merged = {**(env or {}), **MEMBER_ENV.get(name, {}), **SCALE_ENV}
        return super().start(name, redis_url=redis_url, env=merged)


@dataclass
class Scaled:
    """The module's running fleet: the saga's and the PSPs' processes, and the replicas started beside."""

    psp: Psp
    gateways: list[Proc]
    orchestrators: list[Proc]
    writers: list[Proc]
    """The active writer first, then the standby."""
    ipps_adapters: list[Proc]
    qp_adapters: list[Proc]

    @property
    def saga(self) -> SagaFleet:
        return self.psp.saga

    @property
    def fleet(self) -> Fleet:
        return self.psp.saga.fleet

    @property
    def database_url(self) -> str:
        return self.psp.saga.database_url

    def client(self, gateway: Proc, *, connections: int = 20) -> PMClient:
        """An admin client (every intent type) of `gateway`."""
        transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=connections))
        key = self.saga.admin
        return PMClient(gateway.url(""), key.key_id, key.secret, timeout=40.0, transport=transport)


async def start_replicas(saga: SagaFleet) -> Scaled:
    """Start the PSP half, then the second gateway, orchestrator, adapters and the standby writer."""
    psp = await start_psps(saga)
    fleet = saga.fleet
    first_ipps = psp.adapter_ipps
    gateway = fleet.start("gateway", env={"PM_GATEWAY_PROXY_SECRET": PROXY_SECRET})
    orchestrator = fleet.start("orchestrator", env=RECOVERY_ENV)
    ipps = psp.start_adapter_ipps()
    qp_env = {**ADAPTER_QP_ENV, "PM_ADAPTER_QP_QP_URL": psp.qp_url, "PM_ADAPTER_QP_QP_SECRET": QP_SECRET}
    qp = fleet.start("adapter-qp", env=qp_env)
    standby = fleet.start(
        "ledger-writer",
        env={
            **RECOVERY_ENV,
            "PM_LEDGER_WRITER_LEASE_KEY": saga.lease_key,
            "PM_LEDGER_WRITER_LEASE_MS": WRITER_LEASE_MS,
        },
    )
    for proc in (gateway, orchestrator, ipps, qp):
        await proc.wait_ready()
    return Scaled(
        psp,
        gateways=[saga.gateway, gateway],
        orchestrators=[saga.orchestrator, orchestrator],
        writers=[saga.writer, standby],
        ipps_adapters=[first_ipps, ipps],
        qp_adapters=[psp.adapter_qp, qp],
    )


@pytest.fixture(scope="module")
def scaled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scaled]:
    """The module's fleet (see the module docstring) on a fresh migrated database, dropped at the end;
    every process killed and every stream of the fleet deleted, pass or fail."""
    url = new_database_url()
    fleet = ScaledFleet(fixtures.test_redis_url(), url, Path(tmp_path_factory.mktemp("scaling")))
    lease_key = new_lease_key()

    async def up() -> Scaled:
        await db.ensure_database(url)
        await db.migrate(url)
        redis = connect(fixtures.test_redis_url())
        try:
            await delete_streams(redis, *ALL_STREAMS)
            saga = await start(fleet, redis, lease_key)
        finally:
            await redis.aclose()
        return await start_replicas(saga)

    async def down() -> None:
        fleet.kill_all()
        redis = connect(fixtures.test_redis_url())
        try:
            await delete_streams(redis, *ALL_STREAMS)
            await redis.delete(lease_key)
        finally:
            await redis.aclose()

    try:
        yield run(up())
    finally:
        run(down())
        run(db.drop_database(url, force=True))


@pytest.fixture
async def redis() -> AsyncIterator[Redis]:
    client = connect(fixtures.test_redis_url())
    yield client
    await client.aclose()


# -- the load --------------------------------------------------------------------------------------


def wallet_id(owner: str, currency: str) -> int:
    return ids.account_id("user", owner, chart.ledger_of(currency), int(chart.Code.USER_WALLET))


async def open_wallet(pm: PMClient, owner: str, currency: str) -> None:
    """Open the wallet; a 202 (the writer has not opened it yet) is asked again."""
    deadline = time.monotonic() + 30
    while True:
        try:
            await pm.open_wallet(owner, currency)
            return
        except PMError as exc:
            if exc.status != 202 or time.monotonic() > deadline:
                raise
        await asyncio.sleep(0.1)


def user(owner: str) -> http_api.UserParty:
    return http_api.UserParty(id=owner)


def intent(kind: str, amount: int, currency: str, source: http_api.Party, target: http_api.Party) -> Any:
    return http_api.CreateIntent(type=kind, amount=amount, currency=currency, from_=source, to=target)  # type: ignore[arg-type]


@dataclass
class Users:
    """One test's users: THB wallets, funded, that pay; RUB wallets that SBP top-ups credit."""

    thb: list[str]
    rub: list[str]


async def users(scaled: Scaled, run_id: str, *, thb: int, rub: int) -> Users:
    """Open the wallets (through both gateways) and fund the THB ones with 1,000,000 each."""
    made = Users([f"{run_id}-t{i}" for i in range(thb)], [f"{run_id}-r{i}" for i in range(rub)])
    async with AsyncExitStack() as stack:
        pms = [await stack.enter_async_context(scaled.client(g)) for g in scaled.gateways]
        owners = [(o, THB) for o in made.thb] + [(o, RUB) for o in made.rub]
        await asyncio.gather(*(open_wallet(pms[i % 2], o, c) for i, (o, c) in enumerate(owners)))
        funding = [intent("ADJUSTMENT", 1_000_000, THB, http_api.OperatorParty(), user(o)) for o in made.thb]
        sent = await submit(pms, funding, concurrency=10)
        await wait_terminal(scaled, list(sent), 30)
    return made


def mix(run_id: str, people: Users, *, p2p: int, payouts: int, topups: int) -> list[Any]:
    """P2P payments among the THB users, PromptPay withdrawals from them and SBP top-ups of the RUB
    users, shuffled; amounts clear of the IPPS sandbox's magic ones (`pm_sandbox_ipps.values`)."""
    rng = random.Random(run_id)
    bodies = []
    for _ in range(p2p):
        payer, payee = rng.sample(people.thb, 2)
        bodies.append(intent("P2P", rng.randint(100, 5_000), THB, user(payer), user(payee)))
    proxy = http_api.PromptPayParty(proxy_type="MSISDN", proxy_value=MOBILE)
    for n in range(payouts):
        bodies.append(intent("PROMPTPAY_WITHDRAWAL", 1_000 + 7 * n, THB, user(rng.choice(people.thb)), proxy))
    for n in range(topups):
        bodies.append(intent("SBP_TOPUP", 5_000 + 13 * n, RUB, http_api.SbpParty(), user(people.rub[n % 2])))
    rng.shuffle(bodies)
    return bodies


async def submit(
    pms: Sequence[PMClient],
    bodies: Sequence[Any],
    *,
    concurrency: int,
    accepted: Callable[[int], Awaitable[None]] | None = None,
) -> dict[str, str]:
    """Create every intent, alternating between the clients (gateways); their ids → types. After each
    acceptance `accepted` is awaited with the number accepted so far."""
    created: dict[str, str] = {}
    numbered = {str(n): body for n, body in enumerate(bodies)}

    async def send(n: str) -> None:
        body = numbered[n]
        answer = await pms[int(n) % len(pms)].create_intent(body, idempotency_key=uuid.uuid4().hex)
        created[answer.id] = body.type
        if accepted is not None:
            await accepted(len(created))

    await in_parallel(list(numbered), send, concurrency)
    assert len(created) == len(bodies)
    return created


async def wait_terminal(scaled: Scaled, intent_ids: list[str], timeout: float) -> None:
    """Every one of `intent_ids` terminal; fails the test after `timeout` with the states seen and the
    problems the services logged."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await intent_rows(scaled.database_url, intent_ids)
        states = Counter(r.state for r in rows.values())
        if len(rows) == len(intent_ids) and set(states) <= TERMINAL_STATES:
            return
        if time.monotonic() > deadline:
            stuck = [i for i, r in rows.items() if r.state not in TERMINAL_STATES][:3]
            pytest.fail(
                f"not terminal after {timeout}s: {dict(states)}, e.g. {stuck}; {problems(scaled)[-5:]}"
            )
        await asyncio.sleep(0.5)


# -- reading back ----------------------------------------------------------------------------------


async def stream_messages(redis: Redis, stream: str) -> list[dict[str, Any]]:
    """Every message on every partition of `stream`, as JSON objects."""
    out: list[dict[str, Any]] = []
    for p in range(PARTITIONS):
        for _, fields in await redis.xrange(stream_key(stream, p)) or []:
            assert fields is not None and PAYLOAD_FIELD in fields, (stream, p)
            out.append(msgspec.json.decode(fields[PAYLOAD_FIELD]))
    return out


async def check_each_step_once(scaled: Scaled, redis: Redis, sent: dict[str, str]) -> None:
    """One ledger command per intent and step, every command answered, one PSP job per PSP intent,
    and each timeline exactly its route's, with no transition twice.

    Delivery is at least once: a message whose outbox row was not yet marked published when its
    orchestrator stopped is published again by the relay, with the same message id, and consumers
    deduplicate on it. So a step may appear twice on a stream, but only ever as one message."""
    commands = [m for m in await stream_messages(redis, "pm:ledger:commands") if m["intent_id"] in sent]
    per_step: dict[tuple[str, str], set[str]] = {}
    for m in commands:
        per_step.setdefault((m["intent_id"], m["step"]), set()).add(m["message_id"])
    twice = {step: ids for step, ids in per_step.items() if len(ids) > 1}
    assert twice == {}, twice  # two different commands for one step: the step was taken twice
    assert {i for i, _ in per_step} == set(sent)
    results = [m for m in await stream_messages(redis, "pm:ledger:results") if m["intent_id"] in sent]
    assert {m["command_id"] for m in results} == {m["message_id"] for m in commands}
    assert len({m["message_id"] for m in results}) == len({m["message_id"] for m in commands})
    assert all(m["ok"] for m in results), [m for m in results if not m["ok"]][:3]
    for stream, kind in (("pm:psp:ipps:jobs", "PROMPTPAY_WITHDRAWAL"), ("pm:psp:qp:jobs", "SBP_TOPUP")):
        jobs = [m for m in await stream_messages(redis, stream) if m["intent_id"] in sent]
        per_key: dict[str, set[str]] = {}
        for m in jobs:
            per_key.setdefault(m["idempotency_key"], set()).add(m["message_id"])
        assert {k: ids for k, ids in per_key.items() if len(ids) != 1} == {}, stream
        assert {m["intent_id"] for m in jobs} == {i for i, t in sent.items() if t == kind}, stream

    events = await fetch(
        scaled.database_url,
        "SELECT intent_id::text AS id, array_agg(to_state ORDER BY id) AS states,"
        " count(*) AS n, count(DISTINCT (from_state, to_state, reason)) AS distinct_moves"
        " FROM pm.intent_event WHERE intent_id = ANY($1::uuid[]) GROUP BY 1",
        list(sent),
    )
    assert len(events) == len(sent)
    shapes = Counter((sent[e["id"]], tuple(e["states"])) for e in events)
    assert {shape for shape in shapes if list(shape[1]) != TIMELINES[shape[0]]} == set(), shapes
    assert all(e["n"] == e["distinct_moves"] for e in events)


async def check_psps_paid_once(scaled: Scaled, sent: dict[str, str], amounts: dict[str, int]) -> None:
    """At the sandboxes: one IPPS transfer per withdrawal with its amount, and one settled QR per top-up
    with its amount (the QP settlement report has one line per final QR, under our order)."""
    psp = scaled.psp
    for intent_id in (i for i, t in sent.items() if t == "PROMPTPAY_WITHDRAWAL"):
        transfer = await psp.ipps_transfer(intent_id)
        assert transfer is not None and (transfer["status"], transfer["amount"]) == (
            "SUCCESS",
            amounts[intent_id],
        )
    topups = {i for i, t in sent.items() if t == "SBP_TOPUP"}
    day = datetime.now(UTC).date().isoformat()
    report = await psp.qp("GET", f"/v1/settlements/{day}")
    assert report.status_code == 200, report.text
    lines = [row for row in csv.DictReader(io.StringIO(report.text))]
    ours = [row for row in lines if row["merchant_reference"].split(".")[0] in topups]
    per_order = Counter(row["merchant_reference"] for row in ours)
    assert len(per_order) == len(topups) and set(per_order.values()) == {1}, per_order
    assert {row["merchant_reference"].split(".")[0]: int(row["amount"]) for row in ours} == {
        i: amounts[i] for i in topups
    }
    assert {row["status"] for row in ours} == {"SUCCEEDED"}


async def check_wallets(scaled: Scaled, people: Users) -> None:
    """Every wallet of the module holds what its settled intents moved: on the ledger, through the API
    (both gateways) and in PM's projection; nothing left pending; every ledger balances."""
    rows = await intent_rows(scaled.database_url)
    states = Counter((r.state, r.failure_code) for r in rows.values())
    assert set(states) == {("SETTLED", None)}, states
    expected = expected_wallets(rows.values())
    owners = [(o, THB) for o in people.thb] + [(o, RUB) for o in people.rub]
    found = await accounts(scaled.database_url, [wallet_id(o, c) for o, c in owners])
    assert {o: posted(found[wallet_id(o, c)]) for o, c in owners} == {o: expected[o] for o, _ in owners}
    async with AsyncExitStack() as stack:
        pms = [await stack.enter_async_context(scaled.client(g)) for g in scaled.gateways]
        for n, (owner, currency) in enumerate(owners):
            wallet = await pms[n % 2].get_wallet(owner)
            (balance,) = [b for b in wallet.balances if b.currency == currency]
            assert (balance.posted, balance.pending) == (expected[owner], 0), owner
    projected = await fetch(
        scaled.database_url,
        "SELECT owner_id, credits_posted - debits_posted AS posted FROM pm.account_balance"
        " WHERE owner_kind = 'user' AND owner_id = ANY($1)",
        [o for o, _ in owners],
    )
    assert {r["owner_id"]: int(r["posted"]) for r in projected} == {o: expected[o] for o, _ in owners}
    await eventually(lambda: nothing_pending(scaled.saga), timeout=15, what="no pending amount on the ledger")
    await check_ledgers_balance(scaled.saga)


async def acks(proc: Proc, stream: str) -> float:
    """Entries of `stream` (every partition) `proc` handled and acked, from its /metrics."""
    reply = await get(proc.url("/metrics"))
    assert reply is not None and reply.status == 200, proc.name
    prefix = "{" + stream + ":"
    return sum(
        value
        for name, labels, value in samples(reply.text)
        if name == "pm_stream_messages_total"
        and labels.get("outcome") == "ack"
        and labels.get("stream", "").startswith(prefix)
    )


async def held(redis: Redis, consumer: str, group: str, streams: Sequence[str]) -> int:
    """Entries pending with `consumer` in `group` over every partition of `streams`."""
    total = 0
    for stream in streams:
        for p in range(PARTITIONS):
            for row in await redis.xinfo_consumers(stream_key(stream, p), group):
                if as_str(row["name"]) == consumer:
                    total += int(row["pending"])
    return total


async def undrained(redis: Redis) -> list[tuple[str, object]]:
    """What is still pending in a group (by partition and group) or dead-lettered, over every partition
    of the fleet's streams; empty when everything was handled and acked."""
    found: list[tuple[str, object]] = []
    for stream in ALL_STREAMS:
        for p in range(PARTITIONS):
            key = stream_key(stream, p)
            for group in await redis.xinfo_groups(key):
                if int(group["pending"]):
                    name = as_str(group["name"])
                    rows = await redis.xpending_range(key, name, min="-", max="+", count=3)
                    held = [
                        (as_str(r["consumer"]), r["time_since_delivered"], r["times_delivered"]) for r in rows
                    ]
                    found.append((key, (name, int(group["pending"]), held)))
            if dead := await redis.xrange(f"{key}:dlq", count=3):
                found.append((f"{key}:dlq", dead))
    return found


async def drained(redis: Redis) -> None:
    """Every group of every partition drains, and no DLQ has a record."""

    async def empty() -> bool:
        return not await undrained(redis)

    with contextlib.suppress(pytest.fail.Exception):
        await eventually(empty, timeout=15, what="every group drained")
    assert await undrained(redis) == []


def problems(scaled: Scaled) -> list[dict[str, Any]]:
    """ERROR and CRITICAL records of every service process (the sandboxes do not log JSON)."""
    return [
        {"proc": f"{p.name}:{p.consumer}", **r}
        for p in scaled.fleet.procs
        if p.member.kind != "sandbox"
        for r in p.records()
        if r.get("level") in ("ERROR", "CRITICAL")
    ]


# -- the tests -------------------------------------------------------------------------------------


async def test_two_of_each_service_handle_each_intent_once_per_step(scaled: Scaled, redis: Redis) -> None:
    run_id = f"s1-{uuid.uuid4().hex[:6]}"
    people = await users(scaled, run_id, thb=8, rub=2)
    bodies = mix(run_id, people, p2p=40, payouts=30, topups=30)
    async with AsyncExitStack() as stack:
        pms = [await stack.enter_async_context(scaled.client(g)) for g in scaled.gateways]
        started = time.monotonic()
        sent = await submit(pms, bodies, concurrency=20)
    await wait_terminal(scaled, list(sent), 60)
    took = time.monotonic() - started
    rows = await intent_rows(scaled.database_url, list(sent))
    assert Counter(r.state for r in rows.values()) == Counter({"SETTLED": len(sent)}), problems(scaled)[-5:]

    await check_wallets(scaled, people)
    await drained(redis)
    await check_each_step_once(scaled, redis, sent)
    await check_psps_paid_once(scaled, sent, {i: r.amount for i, r in rows.items()})

    # Every replica did work.
    work = {
        "gateway": [await acks(g, "pm:events") for g in scaled.gateways],
        "orchestrator": [await acks(o, "pm:intents") for o in scaled.orchestrators],
        "adapter-ipps": [await acks(a, "pm:psp:ipps:jobs") for a in scaled.ipps_adapters],
        "adapter-qp": [await acks(a, "pm:psp:qp:jobs") for a in scaled.qp_adapters],
    }
    del work["gateway"]  # the gateways read pm:events without a group: they ack nothing
    assert all(n > 0 for done in work.values() for n in done), work
    # The ledger-writer: one active, one standing by on the lease, and only the active one consumes.
    active, standby = scaled.writers
    gauges = []
    for writer in (active, standby):
        reply = await get(writer.url("/metrics"))
        assert reply is not None
        gauges.append(sample_value(reply.text, "pm_ledger_writer_active"))
    assert gauges == [1.0, 0.0]
    assert await acks(active, "pm:ledger:commands") > 0 and await acks(standby, "pm:ledger:commands") == 0
    assert any("standby" in r.get("msg", "") for r in standby.records())
    assert problems(scaled) == []
    print(f"scaling: {len(sent)} intents through 2 gateways settled in {took:.1f}s; acks {work}")


async def test_an_orchestrator_stopped_mid_run_hands_its_entries_over_within_the_lease(
    scaled: Scaled, redis: Redis
) -> None:
    run_id = f"s2-{uuid.uuid4().hex[:6]}"
    people = await users(scaled, run_id, thb=6, rub=2)
    bodies = mix(run_id, people, p2p=60, payouts=20, topups=20)
    leaving = scaled.orchestrators[0]
    stopped = asyncio.Event()
    change: dict[str, Any] = {}

    async def scale_down_at(accepted: int) -> None:
        """A third in: SIGTERM one orchestrator and start another; from half on, send only once the
        newcomer is ready, so that it has work too."""
        if accepted >= len(bodies) // 3 and not stopped.is_set():
            stopped.set()
            leaving.popen.send_signal(signal.SIGTERM)
            joined = scaled.fleet.start("orchestrator", env=RECOVERY_ENV)
            change.update(joined=joined, accepted=accepted, ready=asyncio.create_task(joined.wait_ready()))
        if accepted >= len(bodies) // 2:
            await change["ready"]

    async with AsyncExitStack() as stack:
        pms = [await stack.enter_async_context(scaled.client(g)) for g in scaled.gateways]
        sent = await submit(pms, bodies, concurrency=10, accepted=scale_down_at)
    assert stopped.is_set()
    assert await leaving.wait_exit(30) == 0, leaving.tail()
    exited = time.monotonic()
    left = await held(redis, leaving.consumer, "orchestrator", ORCHESTRATOR_STREAMS)

    async def handed_over() -> bool:
        return await held(redis, leaving.consumer, "orchestrator", ORCHESTRATOR_STREAMS) == 0

    # A stopped consumer acks what it finished; whatever it still held is reclaimed past the lease.
    await eventually(handed_over, timeout=(LEASE_MS + 2 * CLAIM_INTERVAL_MS) / 1000 + 3, what="handover")
    handover_s = time.monotonic() - exited
    joined: Proc = change["joined"]
    scaled.orchestrators[0] = joined
    await wait_terminal(scaled, list(sent), 60)

    await check_wallets(scaled, people)
    await drained(redis)
    await check_each_step_once(scaled, redis, sent)
    rows = await intent_rows(scaled.database_url, list(sent))
    await check_psps_paid_once(scaled, sent, {i: r.amount for i, r in rows.items()})
    records = leaving.records()
    assert records[-1]["msg"] == "orchestrator stopped cleanly", records[-1]
    assert await acks(joined, "pm:intents") + await acks(joined, "pm:ledger:results") > 0
    assert problems(scaled) == []
    print(
        f"scale-down: SIGTERM after {change['accepted']} of {len(sent)} accepted; the stopped"
        f" orchestrator left {left} pending, none after {handover_s:.1f}s"
    )
