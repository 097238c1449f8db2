"""pm_shared.logs: what a failure is logged as, and the JSON line a record becomes."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pm_shared import logs
from pm_shared.errors import BackPressureError, Outage, PermanentError, RetryLater


@pytest.mark.parametrize(
    "outage",
    [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        ConnectionRefusedError(111, "Connect call failed"),
        RedisConnectionError("Connection closed by server."),
        Outage("PostgreSQL is restarting"),
        RetryLater("the PSP did not answer"),
        BackPressureError("{pm:intents:0}", 10, 5, 1.0),
    ],
    ids=type,
)
def test_an_outage_or_a_retry_later_is_a_warning_naming_the_error_without_a_traceback(
    outage: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="t"):
        logs.failure(logging.getLogger("t"), outage, "sweep of %s failed", "QRs")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == f"sweep of QRs failed ({outage!r})"


@pytest.mark.parametrize("error", [KeyError("missing"), PermanentError("a person must look")], ids=type)
def test_anything_else_is_an_error_with_its_traceback(
    error: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise error
    except Exception as exc:
        with caplog.at_level(logging.DEBUG, logger="t"):
            logs.failure(logging.getLogger("t"), exc, "sweep of %s failed", "QRs")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is type(error)
    line = json.loads(logs.JsonFormatter("svc").format(record))
    assert line["level"] == "ERROR" and line["msg"] == "sweep of QRs failed"
    assert f"{type(error).__name__}: {error}" in line["exc"]
