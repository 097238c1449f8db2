"""Redis clients with every timeout and retry pinned explicitly, never the library defaults.

redis-py changed its defaults between major versions (socket timeout, RESP3, ten silent
retries). A retried XREADGROUP is not idempotent, so the client used for blocking reads never
retries on its own: the consumer reconnects and re-reads its own pending entries instead.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
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


def as_str(value: object) -> str:
    """A reply value (bytes in RESP2 with `decode_responses=False`) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def connect(url: str, *, blocking_reads: bool = False, name: str | None = None) -> Redis:
    """A client for `url` (RESP2, bytes replies, explicit timeouts and retries).

    Args:
        url: `redis://host:port/db` (or `rediss://`, `unix://`).
        blocking_reads: the client will issue `XREADGROUP … BLOCK`; it never retries commands.
        name: the client name shown by `CLIENT LIST`.
    """
    if blocking_reads:
        retry = Retry(NoBackoff(), 0)
    else:
        retry = Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.05), COMMAND_RETRIES)
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
