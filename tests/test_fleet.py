"""Cross-service tests: every service started as a real process, probed over HTTP, Redis and its logs.

Each process gets a free port, the test Redis database, a unique consumer name and JSON logs on
stderr (captured to a file). The services provision and consume the fleet's real stream names, so a
test that inspects a stream first deletes that stream's keys (`{pm:<name>:*`) in that database and
then checks only counts it controls. Every process is killed in the fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared import fleet as roster
from pm_shared.messages import IntentStateChanged, IntentSubmitted, LedgerResult, Party, new_message_id, now
from pm_shared.streams import Publisher
from pm_shared.streams.connection import as_str
from pm_shared.streams.dlq import entries
from pm_tools.processes import free_port
from pm_tools.testing.db import migrated_database
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import (
    STOP_TIMEOUT_S,
    Fleet,
    Proc,
    delete_streams,
    get,
    module_fleet,
    sample_value,
    streams_of,
)

pytestmark = pytest.mark.slow

SERVICES = [member.name for member in roster.SERVICES]

# -- every service: start, probes, metrics, SIGTERM, logs ------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
async def test_service_starts_serves_probes_and_stops_cleanly_on_sigterm(
    name: str, fleet: Fleet, redis: Redis
) -> None:
    member = roster.member(name)
    streams = streams_of(member)
    await delete_streams(redis, *streams)
    proc = fleet.start(name)
    await proc.wait_ready()

    healthz = await get(proc.url("/healthz"))
    assert healthz is not None and healthz.status == 200, healthz
    readyz = await get(proc.url("/readyz"))
    assert readyz is not None and readyz.status == 200, readyz

    metrics = await get(proc.url("/metrics"))
    assert metrics is not None and metrics.status == 200, metrics
    assert metrics.headers["content-type"].startswith("text/plain"), metrics.headers
    if member.group is None:
        # The gateway consumes no stream; it exports the default process metrics.
        assert "process_resident_memory_bytes" in metrics.text
        assert "python_info" in metrics.text
    else:
        assert "# TYPE pm_stream_messages_total counter" in metrics.text
        for stream in streams:
            key = f"{{{stream}:0}}"
            assert sample_value(metrics.text, "pm_stream_inflight", stream=key, group=member.group) == 0, key
            acks = sample_value(
                metrics.text, "pm_stream_messages_total", stream=key, group=member.group, outcome="ack"
            )
            assert acks == 0, key
        # Its group exists on every stream it reads, and this process is a member of it.
        for stream in streams:
            consumers = await redis.xinfo_consumers(f"{{{stream}:0}}", member.group)
            assert proc.consumer in {as_str(c["name"]) for c in consumers}, stream

    started = time.monotonic()
    proc.popen.send_signal(signal.SIGTERM)
    assert await proc.wait_exit(STOP_TIMEOUT_S) == 0, proc.tail()
    assert time.monotonic() - started < STOP_TIMEOUT_S

    records = proc.records()
    assert records, "no log lines"
    assert all(r.get("service") == name for r in records), [r for r in records if r.get("service") != name]
    assert all({"ts", "level", "msg"} <= r.keys() for r in records)
    assert any(r["msg"] == f"{name} started" for r in records)
    assert any("SIGTERM" in r["msg"] for r in records)
    assert records[-1]["msg"] == f"{name} stopped cleanly", records[-1]
    assert not [r for r in records if r["level"] in ("ERROR", "CRITICAL")]
    assert proc.stdout_path.read_bytes() == b""


# -- configuration errors --------------------------------------------------------------------------


# Each of these starts a service that exits at once with a configuration error: mostly one core's
# worth of imports. They run on a fleet of the module's, each started when its test (or the test
# before it, in the tests' order) asks, so that two run at once on two cores.
MISCONFIGURED = [(name, "misspelt") for name in SERVICES] + [(name, "port") for name in SERVICES]


def misconfiguration(name: str, fault: str) -> dict[str, str]:
    """A misspelt variable, or a port that is no number."""
    return {"PM_REDIS_ULR": "x"} if fault == "misspelt" else {roster.member(name).port_variable: "eighty"}


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """This module's database, not the session's: a service started here takes up whatever it finds
    (stalled intents, due webhook deliveries), and what other tests left there would be logged as
    errors, which these tests forbid."""
    with migrated_database() as url:
        yield url


@pytest.fixture(scope="module")
def misconfigured(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str, str], Proc]]:
    """The service `name` started with the configuration error `fault`; the next of `MISCONFIGURED`
    is started alongside."""
    with module_fleet(database_url, tmp_path_factory.mktemp("misconfigured")) as fleet:
        started: dict[tuple[str, str], Proc] = {}

        def start(name: str, fault: str) -> Proc:
            if (name, fault) not in started:
                started[name, fault] = fleet.start(name, env=misconfiguration(name, fault))
            return started[name, fault]

        def started_for(name: str, fault: str) -> Proc:
            proc = start(name, fault)
            following = MISCONFIGURED[MISCONFIGURED.index((name, fault)) + 1 :]
            if following:
                start(*following[0])
            return proc

        yield started_for


@pytest.mark.parametrize("name", SERVICES)
async def test_misspelt_variable_is_a_configuration_error_naming_it(
    name: str, misconfigured: Callable[[str, str], Proc]
) -> None:
    proc = misconfigured(name, "misspelt")
    assert await proc.wait_exit(STOP_TIMEOUT_S) == 2
    stderr = proc.stderr()
    assert "PM_REDIS_ULR" in stderr, stderr
    assert "Traceback" not in stderr, stderr


@pytest.mark.parametrize("name", SERVICES)
async def test_invalid_port_is_a_configuration_error_naming_the_variable(
    name: str, misconfigured: Callable[[str, str], Proc]
) -> None:
    variable = roster.member(name).port_variable
    proc = misconfigured(name, "port")
    assert await proc.wait_exit(STOP_TIMEOUT_S) == 2
    stderr = proc.stderr()
    assert variable in stderr, stderr
    assert "Traceback" not in stderr, stderr


# -- hand-offs over Redis --------------------------------------------------------------------------


def intent_submitted() -> IntentSubmitted:
    return IntentSubmitted(
        intent_id=f"int_{uuid.uuid4().hex}",
        message_id=new_message_id(),
        produced_at=now(),
        type="p2p",
        amount=12_345,
        currency="THB",
        source=Party(kind="user", id="u_alice"),
        target=Party(kind="user", id="u_bob"),
        key_id="key_test",
    )


async def test_orchestrator_relays_an_outbox_row_left_unpublished(fleet: Fleet, redis: Redis) -> None:
    # As if a gateway had committed an intent and died before publishing its message.
    await delete_streams(redis, "pm:intents")
    intent = intent_submitted()
    conn = await asyncpg.connect(fleet.database_url)
    try:
        await conn.execute(
            "INSERT INTO pm.outbox (stream, intent_id, message_id, payload, created_at) "
            "VALUES ('pm:intents', $1, $2, $3, now() - interval '1 minute')",
            intent.intent_id,
            intent.message_id,
            msgspec.json.encode(intent),
        )
        proc = fleet.start("orchestrator")
        await proc.wait_ready()

        async def published() -> bool:
            at = await conn.fetchval(
                "SELECT published_at FROM pm.outbox WHERE message_id = $1", intent.message_id
            )
            return at is not None

        await eventually(published, timeout=15, what="the outbox row published by the relay")
    finally:
        await conn.close()

    # The orchestrator then reads it; this message names no intent PM has, so it is dead-lettered intact.
    async def arrived() -> bool:
        return len(await entries(redis, ["{pm:intents:0}:dlq"])) == 1

    await eventually(arrived, timeout=10, what="the relayed intent read by the orchestrator")
    (record,) = await entries(redis, ["{pm:intents:0}:dlq"])
    assert record.payload is not None
    assert msgspec.json.decode(record.payload, type=IntentSubmitted) == intent


async def test_orchestrator_acknowledges_wallet_openings_and_dead_letters_results_of_unknown_intents(
    fleet: Fleet, redis: Redis
) -> None:
    key, dlq = "{pm:ledger:results:0}", "{pm:ledger:results:0}:dlq"
    await delete_streams(redis, "pm:ledger:results")
    proc = fleet.start("orchestrator")
    await proc.wait_ready()
    publisher = Publisher(redis)

    def result(step: str) -> LedgerResult:
        return LedgerResult(
            intent_id=f"int-{uuid.uuid4().hex[:8]}",
            message_id=new_message_id(),
            produced_at=now(),
            command_id=new_message_id(),
            step=step,
            ok=True,
        )

    await publisher.publish("pm:ledger:results", result("open_wallet"))
    other = result("authorize")
    await publisher.publish("pm:ledger:results", other)

    async def settled() -> bool:
        info = await redis.xpending(key, "orchestrator")
        return int(info["pending"]) == 0 and len(await entries(redis, [dlq])) >= 1

    await eventually(settled, timeout=10, what="both results settled")
    (record,) = await entries(redis, [dlq])
    assert record.reason == "unknown_intent"
    assert record.payload is not None
    assert msgspec.json.decode(record.payload, type=LedgerResult) == other


async def test_orchestrator_dead_letters_a_message_naming_no_known_intent(fleet: Fleet, redis: Redis) -> None:
    key, dlq = "{pm:intents:0}", "{pm:intents:0}:dlq"
    await delete_streams(redis, "pm:intents")
    proc = fleet.start("orchestrator")
    await proc.wait_ready()

    intent = intent_submitted()
    entry_id = await Publisher(redis).publish("pm:intents", intent)

    async def dead_lettered() -> bool:
        return len(await entries(redis, [dlq])) >= 1

    await eventually(dead_lettered, timeout=10, what="a record in the intents DLQ")

    async def settled() -> bool:
        info = await redis.xpending(key, "orchestrator")
        return int(info["pending"]) == 0

    await eventually(settled, timeout=5, what="nothing pending in the orchestrator group")

    records = await entries(redis, [dlq])
    assert len(records) == 1, records
    record = records[0]
    assert record.reason == "unknown_intent"
    assert record.fields["original_stream"] == key
    assert record.fields["original_id"] == entry_id
    assert record.fields["group"] == "orchestrator"
    assert record.fields["consumer"] == proc.consumer
    assert record.fields["attempts"] == "1"
    assert "UnknownIntentError" in record.fields["error"]
    assert record.payload is not None
    assert msgspec.json.decode(record.payload, type=IntentSubmitted) == intent  # same message_id and all
    assert await redis.xlen(dlq) == 1

    metrics = await get(proc.url("/metrics"))
    assert metrics is not None and metrics.status == 200
    dead = sample_value(
        metrics.text, "pm_stream_dlq_total", stream=key, group="orchestrator", reason="unknown_intent"
    )
    assert dead == 1, dead

    def logged() -> list[dict[str, Any]]:
        return [r for r in proc.records() if r.get("intent_id") == intent.intent_id]

    async def has_log() -> bool:
        return bool(logged())

    await eventually(has_log, timeout=5, what="a log line with the intent id")
    assert all(r.get("entry_id") == entry_id for r in logged()), logged()


async def test_reconciler_acks_a_state_change_of_an_unknown_intent_and_says_so(
    fleet: Fleet, redis: Redis
) -> None:
    key, dlq = "{pm:events:0}", "{pm:events:0}:dlq"
    await delete_streams(redis, "pm:events")
    proc = fleet.start("reconciler")
    await proc.wait_ready()

    event = IntentStateChanged(
        intent_id=str(uuid.uuid4()),  # no such intent in pm.intent
        message_id=new_message_id(),
        produced_at=now(),
        state="SETTLED",
        previous="AUTHORIZED",
    )
    entry_id = await Publisher(redis).publish("pm:events", event)

    async def acked() -> bool:
        groups = {as_str(g["name"]): g for g in await redis.xinfo_groups(key)}
        group = groups["reconciler"]
        return as_str(group["last-delivered-id"]) == entry_id and int(group["pending"]) == 0

    await eventually(acked, timeout=10, what="the state change delivered to and acked by the reconciler")
    assert await redis.exists(dlq) == 0

    async def counted_as_acked() -> bool:
        # The consumer counts an ack when the pipelined XACK + next XREADGROUP returns (≤ BLOCK later).
        metrics = await get(proc.url("/metrics"))
        assert metrics is not None and metrics.status == 200
        acks = sample_value(
            metrics.text, "pm_stream_messages_total", stream=key, group="reconciler", outcome="ack"
        )
        assert acks in (0, 1), acks
        assert sample_value(metrics.text, "pm_reconciler_intents_checked_total") == 0
        return acks == 1

    await eventually(counted_as_acked, timeout=5, what="pm_stream_messages_total{outcome=ack} == 1")

    def warned() -> list[dict[str, Any]]:
        return [r for r in proc.records() if r["level"] == "WARNING" and event.intent_id in r["msg"]]

    async def has_warning() -> bool:
        return bool(warned())

    await eventually(has_warning, timeout=5, what="a warning naming the unknown intent")
    assert "no record" in warned()[0]["msg"], warned()
    assert not [r for r in proc.records() if r["level"] in ("ERROR", "CRITICAL")]
    assert await redis.exists(dlq) == 0


# -- Redis unreachable -----------------------------------------------------------------------------


def start_redis(port: int, workdir: Path) -> subprocess.Popen[bytes]:
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    return subprocess.Popen([*argv, "--dir", str(workdir)], stdout=subprocess.DEVNULL)


@pytest.mark.parametrize("name", ["orchestrator", "gateway"])
async def test_service_waits_for_redis_without_claiming_readiness_then_becomes_ready(
    name: str, fleet: Fleet, tmp_path: Path
) -> None:
    closed = free_port()
    proc = fleet.start(name, redis_url=f"redis://127.0.0.1:{closed}/9")
    # Watched for 3 s from its first answer (a loaded machine may take a while to get there).
    deadline = time.monotonic() + 30.0
    answered: list[int] = []
    while time.monotonic() < deadline:
        assert proc.popen.poll() is None, f"{name} gave up instead of waiting for Redis"
        readyz = await get(proc.url("/readyz"), timeout=2.0)
        if readyz is not None:
            if not answered:
                deadline = time.monotonic() + 3.0
            answered.append(readyz.status)
        await asyncio.sleep(0.1)
    # Alive (liveness 200) but not ready (503) all along: an orchestrator must not route to it.
    assert answered and all(status == 503 for status in answered), answered
    healthz = await get(proc.url("/healthz"))
    assert healthz is not None and healthz.status == 200, healthz

    server = start_redis(closed, tmp_path)
    try:
        await proc.wait_ready()
    finally:
        server.terminate()
        server.wait(10)


# -- gateway ---------------------------------------------------------------------------------------


async def test_gateway_answers_an_unknown_path_with_a_problem_document(fleet: Fleet) -> None:
    proc = fleet.start("gateway")
    await proc.wait_ready()
    reply = await get(proc.url("/v1/no-such-thing"))
    assert reply is not None
    assert reply.status == 404
    assert reply.headers["content-type"].split(";")[0].strip() == "application/problem+json"
    body = json.loads(reply.body)
    assert body["code"] == "not_found", body
    assert body["status"] == 404, body
