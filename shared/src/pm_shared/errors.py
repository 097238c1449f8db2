"""The errors a stream handler raises to steer what happens to its message.

OUTAGES                   -- PostgreSQL or Redis away: the handler is called again in place, with
                             backoff, without counting a delivery (see pm_shared.streams.consumer)
Exception                 -- anything else: transient; the entry stays pending and is retried
                             (up to the delivery limit, then dead-lettered)
PermanentError            -- retrying cannot help: dead-letter at once (reason `unrecoverable`)
  NotImplementedYet       -- this service cannot handle the message yet: dead-letter at once
                             (reason `unhandled`) so it waits, intact, for a replay
"""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_shared.db.errors import CONNECTION_LOST

OUTAGES: tuple[type[BaseException], ...] = (*CONNECTION_LOST, RedisConnectionError, RedisTimeoutError)
"""PostgreSQL or Redis went away (a restart, a failover, a cut connection): worth trying again soon,
and expected often enough that it is logged as a warning, not an error with a traceback."""


class PermanentError(Exception):
    """The message can never be handled as it is."""

    reason = "unrecoverable"


class NotImplementedYet(PermanentError):
    """The logic for this message is not part of this build."""

    reason = "unhandled"
