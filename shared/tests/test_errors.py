"""pm_shared.errors: one tree, and the verdict `classify` gives each kind of failure."""

from __future__ import annotations

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from pm_shared import errors
from pm_shared.errors import (
    BackPressureError,
    NotImplementedYet,
    Outage,
    PermanentError,
    PMError,
    RetryLater,
    StreamMissingError,
    Verdict,
)
from pm_shared.psp.adapter.calls import Unavailable
from pm_shared.settings import SettingsError
from pm_shared.streams import errors as stream_errors


@pytest.mark.parametrize(
    ("exc", "verdict"),
    [
        (Outage("PostgreSQL is restarting"), Verdict.OUTAGE),
        (asyncpg.CannotConnectNowError("starting up"), Verdict.OUTAGE),
        (RedisConnectionError("closed"), Verdict.OUTAGE),
        (ConnectionResetError(104, "reset"), Verdict.OUTAGE),
        (RetryLater("later"), Verdict.RETRY),
        (BackPressureError("{pm:intents:0}", 10, 5, 1.0), Verdict.RETRY),
        (StreamMissingError("{pm:intents:0}"), Verdict.RETRY),
        (Unavailable("the PSP timed out"), Verdict.RETRY),
        (PermanentError("never"), Verdict.PERMANENT),
        (NotImplementedYet("not in this build"), Verdict.PERMANENT),
        (ValueError("a bug"), Verdict.BUG),
        (ResponseError("OOM command not allowed"), Verdict.BUG),
        (SettingsError("PM_X: unknown"), Verdict.BUG),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else value.name,
)
def test_each_kind_of_failure_gets_its_verdict(exc: BaseException, verdict: Verdict) -> None:
    assert errors.classify(exc) is verdict
    assert errors.classify(exc).transient == (verdict in (Verdict.OUTAGE, Verdict.RETRY))


def test_every_error_of_the_tree_has_one_root() -> None:
    for kind in (
        RetryLater,
        Outage,
        BackPressureError,
        StreamMissingError,
        PermanentError,
        NotImplementedYet,
    ):
        assert issubclass(kind, PMError)
    assert issubclass(Outage, RetryLater) and issubclass(BackPressureError, RetryLater)
    assert not issubclass(PermanentError, RetryLater)
    # The streams runtime's names are the same classes.
    assert (stream_errors.BackPressureError, stream_errors.StreamMissingError) == (
        BackPressureError,
        StreamMissingError,
    )


def test_retry_after_is_what_the_error_asks_for() -> None:
    assert errors.retry_after_s(RetryLater("soon", retry_after_s=2.5)) == 2.5
    assert errors.retry_after_s(BackPressureError("{pm:intents:0}", 10, 5, 1.5)) == 1.5
    assert errors.retry_after_s(RetryLater("some time")) is None
    assert errors.retry_after_s(ValueError("a bug")) is None


def test_the_module_docstring_is_the_tree() -> None:
    doc = errors.__doc__ or ""
    for name in (
        "PMError",
        "RetryLater",
        "Outage",
        "BackPressureError",
        "PermanentError",
        "NotImplementedYet",
    ):
        assert name in doc
