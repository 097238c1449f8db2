"""The streams runtime on a real Redis Cluster: 3 masters and 3 replicas on loopback, started here.

Skipped when redis-server or redis-cli is not installed. Proves: the P = 6 partitions of a stream
land on different masters; publish (XADD and the publish_many script), back-pressure, consume, ack,
reclaim, the DLQ move (one MULTI) and replay (one script) work through `connect`'s cluster client;
`Pipelined` runs scripts on a cluster pipeline; a master killed with SIGKILL mid-stream is replaced
by its replica and publishing and consuming go on.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
import typer
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from typer.testing import CliRunner, Result

from pm_shared.pipelined import Pipelined, Queue
from pm_shared.streams import BackPressureError, Consumer, Delivery, Publisher, names
from pm_shared.streams import dlq as dlq_ops
from pm_shared.streams.connection import TRANSIENT_ERRORS, cluster_nodes, connect, is_cluster_url
from pm_shared.streams.names import StreamSpec, dlq_key, partition_of, stream_key
from pm_shared.streams.provision import provision
from pm_tools.cli import streams_cmd
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.worker import Probe, probe

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None or shutil.which("redis-cli") is None,
    reason="redis-server/redis-cli not installed: the Redis Cluster tests need a real cluster",
)

P = 6
GROUP = "svc"
NODE_TIMEOUT_MS = 1000
MakeConsumer = Callable[..., Consumer[Probe]]
RunUntil = Callable[..., Awaitable[None]]


@dataclass
class Cluster:
    ports: list[int]
    processes: dict[int, subprocess.Popen[bytes]]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def cli(self, port: int, *args: str) -> str:
        return subprocess.run(
            ["redis-cli", "-p", str(port), *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(5)


def _free(port: int) -> bool:
    for candidate in (port, port + 10_000):  # the node's port and its cluster bus port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                return False
    return True


def _ports(start: int) -> list[int]:
    ports: list[int] = []
    port = start
    while len(ports) < 6 and port < start + 2000:
        if _free(port):
            ports.append(port)
        port += 1
    if len(ports) < 6:
        pytest.skip(f"no 6 free ports from {start} (and their bus ports)")
    return ports


def _start(root: Path, start_port: int) -> Cluster:
    ports = _ports(start_port)
    cluster = Cluster(ports, {})
    for port in ports:
        data = root / str(port)
        data.mkdir(parents=True)
        cluster.processes[port] = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
             "--dir", str(data), "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0",
             "--logfile", str(data / "log")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not all(_answers(port) for port in ports):
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        _wait_ready(cluster, ports, masters=3, timeout=20)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _answers(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_ready(cluster: Cluster, ports: list[int], *, masters: int, timeout: float) -> None:
    """Every node in `ports` sees cluster_state:ok and `masters` masters, and every replica among them
    has finished its sync (a replica that never synced would not take over from its master)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if all("cluster_state:ok" in cluster.cli(p, "cluster", "info") for p in ports):
                nodes = _nodes(cluster, ports[0])
                replicas = [p for p in ports if nodes.get(p, ("", ""))[0] == "replica"]
                synced = all(
                    "master_link_status:up" in cluster.cli(p, "info", "replication") for p in replicas
                )
                if (
                    synced
                    and len(replicas) == len(ports) - masters
                    and sum(1 for n in nodes.values() if n[0] == "master") == masters
                ):
                    return
        except subprocess.CalledProcessError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"cluster not ready after {timeout}s")
        time.sleep(0.1)


def _nodes(cluster: Cluster, port: int) -> dict[int, tuple[str, str]]:
    """Port → (role, slots) of the live nodes, as node `port` sees them."""
    found: dict[int, tuple[str, str]] = {}
    for line in cluster.cli(port, "cluster", "nodes").splitlines():
        fields = line.split()
        if "fail" in fields[2] or "noaddr" in fields[2]:
            continue
        role = "master" if "master" in fields[2] else "replica"
        found[int(fields[1].split(":")[1].split("@")[0])] = (role, " ".join(fields[8:]))
    return found


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    started = _start(tmp_path_factory.mktemp("cluster"), 17_000)
    yield started
    started.stop()


@pytest.fixture
def redis_url(cluster: Cluster) -> str:
    """The cluster's URL: the `redis`, `reader`, `stream_name` and `make_consumer` fixtures use it."""
    return cluster.url


@pytest.fixture
async def streams(redis: Redis, stream_name: str) -> StreamSpec:
    spec = StreamSpec(stream_name, (GROUP,), "test")
    assert await provision(redis, P, [spec]) == P
    return spec


def _cluster(redis: Redis) -> RedisCluster:
    """The cluster client `connect` returned (typed as `Redis` for its callers)."""
    client: object = redis
    assert isinstance(client, RedisCluster), type(client)
    return client


async def _master_of(redis: Redis, key: str) -> str:
    client = _cluster(redis)
    await client.initialize()
    node = client.get_node_from_key(key)
    assert node is not None, key
    return str(node.name)


def _intent_on(partition: int) -> str:
    """An intent id whose messages go to `partition`."""
    return next(f"i-{n}" for n in range(10_000) if partition_of(f"i-{n}", P) == partition)


def test_cluster_urls() -> None:
    assert cluster_nodes("redis+cluster://a:7000,b:7001/0") == ([("a", 7000), ("b", 7001)], {})
    assert cluster_nodes("redis+cluster://u:p%40ss@a:7000") == (
        [("a", 7000)],
        {"username": "u", "password": "p@ss"},
    )
    assert is_cluster_url("redis+cluster://a:7000") and not is_cluster_url("redis://a:6379/0")
    for bad in ("redis+cluster://a", "redis+cluster://a:7000/3", "redis://a:6379"):
        with pytest.raises(ValueError):
            cluster_nodes(bad)


async def test_connect_gives_a_cluster_client_and_partitions_spread_over_the_masters(
    redis: Redis, cluster: Cluster
) -> None:
    client = _cluster(redis)
    keys = [stream_key("pm:intents", p) for p in range(P)]
    slots = [int(cluster.cli(cluster.ports[0], "cluster", "keyslot", key)) for key in keys]
    assert slots == [client.keyslot(key) for key in keys]
    # The stream, its DLQ and its failure records share the slot: a DLQ move is one MULTI.
    assert all(client.keyslot(dlq_key("pm:intents", p)) == slot for p, slot in enumerate(slots))
    masters = {await _master_of(redis, key) for key in keys}
    assert len(masters) == 3, f"6 partitions on {masters}"


async def test_publish_consume_ack_over_six_partitions(
    redis: Redis, streams: StreamSpec, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    publisher = Publisher(redis, partitions=P)
    messages = [probe(seq) for seq in range(120)]
    for message in messages[:20]:
        await publisher.publish(streams, message)
    await publisher.publish_many(streams, messages[20:])  # the script: one call per partition
    keys = [stream_key(streams.name, p) for p in range(P)]
    lengths = [int(await redis.xlen(key)) for key in keys]
    assert sum(lengths) == 120 and all(lengths), lengths
    assert len({await _master_of(redis, key) for key in keys}) >= 2
    seen: set[int] = set()

    async def handle(delivery: Delivery[Probe]) -> None:
        seen.add(delivery.message.seq)

    consumer = make_consumer(handle=handle, partitions=P)

    async def drained() -> bool:
        if len(seen) < 120:
            return False
        pending = [int((await redis.xpending(key, GROUP))["pending"]) for key in keys]
        return sum(pending) == 0

    await run_until(consumer, drained)
    assert seen == set(range(120))


async def test_back_pressure_on_a_cluster(redis: Redis, streams: StreamSpec) -> None:
    publisher = Publisher(redis, partitions=P, maxlen=20, threshold=5)
    intent = _intent_on(3)
    for seq in range(5):
        await publisher.publish(streams, probe(seq, intent))
    with pytest.raises(BackPressureError):
        await publisher.publish(streams, probe(5, intent))
    # Another partition (most likely on another master) still takes messages.
    await publisher.publish(streams, probe(6, _intent_on(1)))


async def test_retries_dead_letter_and_replay_on_a_cluster(
    redis: Redis, streams: StreamSpec, make_consumer: MakeConsumer, run_until: RunUntil
) -> None:
    partition = 2
    key, dlq = stream_key(streams.name, partition), dlq_key(streams.name, partition)
    message = probe(7, _intent_on(partition))
    publisher = Publisher(redis, partitions=P)
    await publisher.publish(streams, message)
    attempts: list[int] = []
    fixed = False

    async def handle(delivery: Delivery[Probe]) -> None:
        attempts.append(delivery.attempt)
        if not fixed:
            raise RuntimeError("ledger says no")

    async def dead_lettered() -> bool:
        return int(await redis.xlen(dlq)) == 1

    # Deliveries 2 and 3 come through the reclaimer (XAUTOCLAIM); the third failure is moved to the
    # DLQ and acked in one MULTI on the partition's master.
    await run_until(make_consumer(handle=handle, retry_delay_ms=100, partitions=P), dead_lettered)
    assert attempts == [1, 2, 3]
    assert int((await redis.xpending(key, GROUP))["pending"]) == 0
    (letter,) = await dlq_ops.entries(redis, [dlq])
    assert letter.reason == "max_deliveries"
    assert msgspec.json.decode(letter.payload or b"", type=Probe) == message

    fixed = True
    await dlq_ops.replay(redis, publisher, letter)  # one script over the stream and its DLQ
    assert int(await redis.xlen(dlq)) == 0

    async def handled_again() -> bool:
        return len(attempts) == 4 and int((await redis.xpending(key, GROUP))["pending"]) == 0

    await run_until(make_consumer(handle=handle, partitions=P), handled_again)


async def test_pipelined_scripts_on_a_cluster_pipeline(
    redis: Redis, cluster: Cluster, stream_name: str
) -> None:
    incr = redis.register_script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    calls = Pipelined(redis)
    keys = [f"{{{stream_name}:{p}}}:n" for p in range(P)]
    assert len({await _master_of(redis, key) for key in keys}) >= 2
    # No master has the script loaded: a cluster pipeline would fail an EVALSHA with NOSCRIPT.
    for port in cluster.ports:
        if _nodes(cluster, port)[port][0] == "master":
            cluster.cli(port, "script", "flush")

    def add(key: str, amount: int) -> Queue:
        return lambda pipe: incr(keys=[key], args=[amount], client=pipe)

    def get(key: str) -> Queue:
        return lambda pipe: pipe.get(key)

    first = await asyncio.gather(*(calls(add(k, 2)) for k in keys))
    again = await asyncio.gather(*(calls(add(k, 3)) for k in keys), *(calls(get(k)) for k in keys))
    assert first == [2] * P
    assert again == [5] * P + [b"5"] * P
    assert await incr(keys=[keys[0]], args=[1]) == 6  # outside a pipeline: EVALSHA, loaded on NOSCRIPT


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A cluster of this test alone (it kills one of its masters)."""
    started = _start(tmp_path, 17_100)
    yield started
    started.stop()


async def _publish_until(
    publisher: Publisher, spec: StreamSpec, seqs: range, acked: dict[int, tuple[str, float]]
) -> None:
    """Publish each seq, retrying through the failover; `acked` gets what XADD acknowledged, and when."""
    for seq in seqs:
        message = probe(seq)
        deadline = time.monotonic() + 15
        while True:
            try:
                await publisher.publish(spec, message)
                acked[seq] = (publisher.key_for(spec, message.intent_id), time.monotonic())
                break
            except TRANSIENT_ERRORS:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)
        await asyncio.sleep(0.002)


async def test_a_master_killed_mid_stream_is_replaced_and_the_stream_goes_on(own_cluster: Cluster) -> None:
    url = own_cluster.url
    redis, reader = connect(url), connect(url, blocking_reads=True)
    try:
        await _kill_a_master_mid_stream(own_cluster, redis, reader)
    finally:
        await redis.aclose()
        await reader.aclose()


async def _kill_a_master_mid_stream(cluster: Cluster, redis: Redis, reader: Redis) -> None:
    spec = StreamSpec("pm:failover", (GROUP,), "test")
    await provision(redis, P, [spec])
    seen: set[int] = set()

    async def handle(delivery: Delivery[Probe]) -> None:
        seen.add(delivery.message.seq)  # idempotent: a redelivery after the failover adds nothing

    consumer = Consumer(
        redis=redis, reader=reader, stream=spec.name, group=GROUP, consumer="c1",
        decoder=msgspec.json.Decoder(Probe), handle=handle,
        block_ms=50, lease_ms=1_000, retry_delay_ms=500, claim_interval_ms=100, partitions=P,
    )  # fmt: skip
    stop = asyncio.Event()
    running = asyncio.create_task(consumer.run(stop))
    publisher = Publisher(redis, partitions=P)
    acked: dict[int, tuple[str, float]] = {}
    try:
        await _publish_until(publisher, spec, range(0, 200), acked)
        await eventually(lambda: _true(len(seen) == 200), timeout=10, what="the first 200 consumed")
        keys = [stream_key(spec.name, p) for p in range(P)]
        victim = int((await _master_of(redis, keys[0])).rsplit(":", 1)[1])
        on_victim = {key for key in keys if await _master_of(redis, key) == f"127.0.0.1:{victim}"}
        publishing = asyncio.create_task(_publish_until(publisher, spec, range(200, 400), acked))
        await asyncio.sleep(0.2)
        killed_at = time.monotonic()
        cluster.processes[victim].send_signal(signal.SIGKILL)
        cluster.processes[victim].wait(5)
        survivors = [p for p in cluster.ports if p != victim]
        await asyncio.to_thread(_wait_ready, cluster, survivors, masters=3, timeout=20)
        promoted_at = time.monotonic()
        await publishing
        await _publish_until(publisher, spec, range(400, 500), acked)
        after = {seq for seq, (_, at) in acked.items() if at > promoted_at}
        assert after and 400 in after and 499 in after
        await eventually(lambda: _true(after <= seen), timeout=15, what="every entry acked after promotion")
        lost = set(acked) - seen
        # Asynchronous replication may drop what the old master acked just before it died, and only
        # that: entries of its own partitions, acked after the kill was decided (or just before).
        for seq in lost:
            key, at = acked[seq]
            assert key in on_victim, f"seq {seq} on {key} (a surviving master) was lost"
            assert killed_at - 1.0 < at < killed_at + 0.1, (
                f"seq {seq} acked at {at - killed_at:+.1f}s was lost"
            )
        assert len(lost) <= 50, f"{len(lost)} lost"
        print(f"failover: {len(acked)} acked, {len(lost)} lost by async replication, promoted "
              f"{promoted_at - killed_at:.1f}s after the kill")  # fmt: skip
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)


async def _true(value: bool) -> bool:
    return value


async def test_pm_streams_shows_each_partitions_node(
    redis: Redis, redis_url: str, stream_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = StreamSpec(stream_name, (GROUP,), "test")
    monkeypatch.setattr(names, "ALL_STREAMS", (spec,))
    app = typer.Typer()
    app.command("streams")(streams_cmd.streams)

    @app.callback()
    def _root() -> None:
        """Keep `streams` a subcommand, as under `pm`."""

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(
            app, ["streams", "--partitions", str(P), *args], env={"PM_REDIS_URL": redis_url}
        )

    result = await asyncio.to_thread(invoke, "--provision", "--json")
    assert result.exit_code == 0, result.output
    rows = msgspec.json.decode(result.stdout)
    assert [row["key"] for row in rows] == [stream_key(stream_name, p) for p in range(P)]
    assert [row["node"] for row in rows] == [await _master_of(redis, row["key"]) for row in rows]
    assert len({row["node"] for row in rows}) >= 2
    table = await asyncio.to_thread(invoke)
    assert table.exit_code == 0, table.output
    assert "Node" in table.stdout and rows[0]["node"] in table.stdout
