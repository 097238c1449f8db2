"""PM's errors, rooted in one tree that says what should happen next: try again, or give up.

PMError                       -- every error PM raises on purpose
  RetryLater                  -- transient: the entry stays pending and is delivered again (a
                                 delivery counted) after `retry_after_s` when the raiser knows it,
                                 else after the consumer's retry delay; dead-lettered
                                 (`max_deliveries`) after its last delivery
    Outage                    -- PostgreSQL or Redis away: the handler is called again in place,
                                 with backoff, without counting a delivery (so are the drivers'
                                 own exceptions listed in OUTAGES)
    BackPressureError         -- a stream's readers are too far behind (`retry_after_s` says when)
    StreamMissingError        -- a stream does not exist (yet): it must be provisioned
  PermanentError              -- retrying cannot help: dead-lettered at once (reason `unrecoverable`,
                                 or the subclass's `reason`)
    NotImplementedYet         -- not handled by this build: dead-lettered at once (reason
                                 `unhandled`), intact for a replay
any other Exception           -- a bug: retried up to the delivery limit, then dead-lettered
                                 (`max_deliveries`); logged as an error with its traceback

`classify` turns an exception into one of these verdicts; the stream consumer and the outbox relay
decide with it (see docs/streams.md).
"""

from __future__ import annotations

import enum

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from pm_shared.db.errors import CONNECTION_LOST

OUTAGES: tuple[type[BaseException], ...] = (*CONNECTION_LOST, RedisConnectionError, RedisTimeoutError)
"""The drivers' exceptions that mean PostgreSQL or Redis went away (a restart, a failover, a cut
connection): an `Outage` by another name. Worth trying again soon, and expected often enough that
it is logged as a warning, not an error with a traceback."""


class PMError(Exception):
    """The root of PM's own errors."""


class RetryLater(PMError):
    """Transient: try again later (a delivery is counted)."""

    def __init__(self, message: str = "", *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """When trying again has a chance (None: the caller's usual delay)."""


class Outage(RetryLater):
    """PostgreSQL or Redis is unreachable: wait it out, in place, without counting a delivery."""


class BackPressureError(RetryLater):
    """The downstream group is too far behind; try again after `retry_after_s`."""

    def __init__(self, stream: str, outstanding: int, threshold: int, retry_after_s: float) -> None:
        super().__init__(
            f"{stream}: {outstanding} entries outstanding (threshold {threshold}); "
            f"retry after {retry_after_s:g}s",
            retry_after_s=retry_after_s,
        )
        self.stream = stream
        self.outstanding = outstanding
        self.threshold = threshold
        self.retry_after_s: float = retry_after_s


class StreamMissingError(RetryLater):
    """The stream does not exist: never provisioned (`pm streams --provision`, `pm up`), or deleted."""

    def __init__(self, key: str) -> None:
        super().__init__(f"stream {key} does not exist; provision it first (pm streams --provision)")
        self.key = key


class PermanentError(PMError):
    """The message can never be handled as it is."""

    reason = "unrecoverable"


class NotImplementedYet(PermanentError):
    """The logic for this message is not part of this build."""

    reason = "unhandled"


class Verdict(enum.Enum):
    """What to do about a failure (see the tree above)."""

    OUTAGE = "outage"
    """Try again in place, soon; nothing counted."""
    RETRY = "retry"
    """Try again later, counted (a `RetryLater`)."""
    PERMANENT = "permanent"
    """Give up at once (a `PermanentError`)."""
    BUG = "bug"
    """Anything else: try again up to the limit, and say so loudly."""

    @property
    def transient(self) -> bool:
        """It passes by itself: worth a warning, not an error with a traceback."""
        return self in (Verdict.OUTAGE, Verdict.RETRY)


def classify(exc: BaseException) -> Verdict:
    """The verdict on `exc`: an `Outage` or a driver exception in OUTAGES is an outage."""
    if isinstance(exc, PermanentError):
        return Verdict.PERMANENT
    if isinstance(exc, (Outage, *OUTAGES)):
        return Verdict.OUTAGE
    if isinstance(exc, RetryLater):
        return Verdict.RETRY
    return Verdict.BUG


def retry_after_s(exc: BaseException) -> float | None:
    """How long `exc` asks to wait before the next try (None: it does not say)."""
    return exc.retry_after_s if isinstance(exc, RetryLater) else None
