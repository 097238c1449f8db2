"""Redis clients with every timeout and retry pinned explicitly, never the library defaults.

redis-py changed its defaults between major versions (socket timeout, RESP3, ten silent
retries). A retried XREADGROUP is not idempotent, so the client used for blocking reads never
retries on its own: the consumer reconnects and re-reads its own pending entries instead.

`PM_REDIS_URL` may also name a Redis Cluster: `redis+cluster://host:port[,host:port…][/0]` (any
one reachable node is enough; the others are discovered). `connect` then returns a
`redis.asyncio.cluster.RedisCluster` (subclassed here, see `ClusterClient`) with the same
timeouts, and retries only what the single-Redis client retries. A MOVED, ASK or TRYAGAIN reply is
always followed by the client itself (it is a redirection: the command did not run), also on the
client for blocking reads. Every key the runtime uses in one command, script or MULTI carries its
partition's hash tag (`names`), so it lives in one slot.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, cast
from urllib.parse import unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, ClusterPipeline, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ClusterDownError, ClusterError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Longer than the longest BLOCK (2 s) plus the reply of a large batch on a busy loop.
SOCKET_TIMEOUT_S = 10.0
CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 15
# Commands other than blocking reads are idempotent or guarded (XACK, XADD of a known message id).
COMMAND_RETRIES = 3
# Connections per client. When all are busy a command waits up to POOL_WAIT_S for one (redis-py's
# default pool raises "Too many connections" at once instead, which a burst of requests turns into
# errors rather than a short queue).
MAX_CONNECTIONS = 100
POOL_WAIT_S = 5.0

CLUSTER_SCHEME = "redis+cluster"
# Cluster only. Connections per node: as for one Redis (the cluster client's pools raise at once when
# full, they do not queue; 100 per node is far above what one service uses).
CLUSTER_MAX_CONNECTIONS_PER_NODE = MAX_CONNECTIONS
# Cluster only. A full slot map refresh (CLUSTER SLOTS) after this many MOVED replies; in between each
# MOVED only moves its one slot in the cached map. redis-py's default.
CLUSTER_REINITIALIZE_STEPS = 5
# Cluster only. Every slot must be served before commands run: a cluster with an uncovered slot
# answers CLUSTERDOWN, which is retried (then raised) rather than sent to a wrong node.
CLUSTER_REQUIRE_FULL_COVERAGE = True

RedisClient = Redis | RedisCluster
"""What `connect` may return at run time. `connect` is annotated `Redis` so that its many callers keep
their annotations (a `RedisCluster` answers the same command methods; pipelines and scripts differ,
see `ClusterClient`); code written for both from now on can take this union and let mypy check it."""

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ClusterDownError,
    ClusterError,
    SlotNotCoveredError,
    TryAgainError,
)
"""Errors after which the same command may succeed later: a lost connection, and on a cluster a
failover in progress (CLUSTERDOWN, an uncovered slot, redirections that did not settle)."""


def as_str(value: object) -> str:
    """A reply value (bytes in RESP2 with `decode_responses=False`) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def is_cluster_url(url: str) -> bool:
    return url.split("://", 1)[0].lower() == CLUSTER_SCHEME


def cluster_nodes(url: str) -> tuple[list[tuple[str, int]], dict[str, str]]:
    """The seed nodes and credentials of a `redis+cluster://[user:password@]host:port[,…][/0]` URL.

    ValueError for another scheme, a node without a port, or a database other than 0 (a cluster has
    only database 0).
    """
    parts = urlsplit(url)
    if parts.scheme.lower() != CLUSTER_SCHEME:
        raise ValueError(f"not a {CLUSTER_SCHEME}:// URL: {url!r}")
    credentials: dict[str, str] = {}
    hosts = parts.netloc
    if "@" in hosts:
        userinfo, hosts = hosts.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        if user:
            credentials["username"] = unquote(user)
        if password:
            credentials["password"] = unquote(password)
    nodes: list[tuple[str, int]] = []
    for node in hosts.split(","):
        host, _, port = node.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"{url!r}: every cluster node needs host:port, got {node!r}")
        nodes.append((host.strip("[]"), int(port)))
    db = parts.path.strip("/")
    if db not in ("", "0"):
        raise ValueError(f"{url!r}: a Redis Cluster has only database 0")
    return nodes, credentials


class ClusterPipelineWithScripts(ClusterPipeline):
    """A cluster pipeline in which a registered script runs as `EVAL` with its body.

    redis-py's `Pipeline` loads the scripts queued on it before sending; its cluster pipeline does
    not, so an `EVALSHA` in it fails with NOSCRIPT on a node that has not loaded the script yet (a
    new master after a failover, among others). Sending the body costs its bytes per call, never a
    failure.
    """

    def __init__(self, client: ClusterClient, transaction: bool | None = None) -> None:
        super().__init__(client, transaction)
        self._bodies = client.script_bodies

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        body = self._bodies.get(sha)
        if body is None:
            self.execute_command("EVALSHA", sha, numkeys, *keys_and_args)
        else:
            self.execute_command("EVAL", body, numkeys, *keys_and_args)
        # `AsyncScript` awaits what this returns; awaiting the pipeline itself would empty its queue.
        return _Queued(self)

    async def execute(self, raise_on_error: bool = True, allow_redirections: bool = True) -> list[Any]:
        try:
            return await super().execute(raise_on_error, allow_redirections)
        except AttributeError as exc:
            raise _lost_under_us(exc) from exc


class _Queued:
    """An awaitable that gives back the pipeline a command was queued on, and does nothing else."""

    def __init__(self, pipe: ClusterPipeline) -> None:
        self.pipe = pipe

    def __await__(self) -> Generator[Any, None, ClusterPipeline]:
        return self._done().__await__()

    async def _done(self) -> ClusterPipeline:
        return self.pipe


class ClusterClient(RedisCluster):
    """`RedisCluster` whose pipelines can run registered scripts (see `ClusterPipelineWithScripts`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.script_bodies: dict[str, bytes | str] = {}

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().execute_command(*args, **kwargs)
        except AttributeError as exc:
            raise _lost_under_us(exc) from exc

    def register_script(self, script: Any) -> Any:
        registered: AsyncScript = super().register_script(script)
        self.script_bodies[registered.sha] = script
        return registered

    def pipeline(self, transaction: Any | None = None, shard_hint: Any | None = None) -> ClusterPipeline:
        if shard_hint:
            raise ValueError("a cluster pipeline takes no shard_hint")
        # redis-py's annotations leave `_event_dispatcher` abstract on ClusterPipeline (it is a property
        # of the client it wraps); its own `RedisCluster.pipeline` instantiates it the same way.
        return ClusterPipelineWithScripts(self, bool(transaction))  # type: ignore[abstract]


def _lost_under_us(exc: AttributeError) -> Exception:
    """redis-py 8's cluster client closes every connection when it resets its view of the cluster (on
    CLUSTERDOWN, or before retrying a pipeline), also connections that another task is writing to,
    which then fails with `'NoneType' object has no attribute 'writelines'`. For the caller that is a
    lost connection: it is reported as one, so the usual retry or re-read applies."""
    if "NoneType" not in str(exc):
        return exc
    return RedisConnectionError(f"connection closed during a cluster topology reset ({exc})")


def _retry(blocking_reads: bool) -> Retry:
    if blocking_reads:
        return Retry(NoBackoff(), 0)
    return Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), COMMAND_RETRIES)


def connect(url: str, *, blocking_reads: bool = False, name: str | None = None) -> Redis:
    """A client for `url` (RESP2, bytes replies, explicit timeouts and retries).

    Args:
        url: `redis://host:port/db` (or `rediss://`, `unix://`), or `redis+cluster://host:port,…`
            for a Redis Cluster (then a `ClusterClient`, typed as `Redis`: see `RedisClient`).
        blocking_reads: the client will issue `XREADGROUP … BLOCK`; it never retries commands.
        name: the client name shown by `CLIENT LIST`.
    """
    if is_cluster_url(url):
        return cast(Redis, connect_cluster(url, blocking_reads=blocking_reads, name=name))
    retry = _retry(blocking_reads)
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=POOL_WAIT_S,
        protocol=2,
        decode_responses=False,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        client_name=name,
    )
    # from_pool: the client owns the pool, so closing the client closes its connections.
    return Redis.from_pool(pool)


def connect_cluster(url: str, *, blocking_reads: bool = False, name: str | None = None) -> ClusterClient:
    """A cluster client for a `redis+cluster://` URL, with the knobs of `connect` plus the `CLUSTER_*`
    ones above.

    Retries: a lost connection, a timeout, CLUSTERDOWN or an uncovered slot is retried
    `COMMAND_RETRIES` times after a refresh of the slot map (never on the client for blocking
    reads); redirections (MOVED, ASK, TRYAGAIN) are followed up to 16 times on every client.
    Replicas are never read from: a consumer group lives on its master.
    """
    nodes, credentials = cluster_nodes(url)
    return ClusterClient(
        startup_nodes=[ClusterNode(host, port) for host, port in nodes],
        require_full_coverage=CLUSTER_REQUIRE_FULL_COVERAGE,
        reinitialize_steps=CLUSTER_REINITIALIZE_STEPS,
        max_connections=CLUSTER_MAX_CONNECTIONS_PER_NODE,
        protocol=2,
        decode_responses=False,
        socket_timeout=SOCKET_TIMEOUT_S,
        socket_connect_timeout=CONNECT_TIMEOUT_S,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=_retry(blocking_reads),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        client_name=name,
        **credentials,
    )


async def master_of(redis: Redis, key: str) -> str | None:
    """`host:port` of the master serving `key` when `redis` is a cluster client; None for one Redis."""
    client: object = redis
    if not isinstance(client, RedisCluster):
        return None
    await client.initialize()
    node = client.get_node_from_key(key)
    return None if node is None else str(node.name)
