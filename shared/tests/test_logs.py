"""pm_shared.logs: what a failure is logged as, and the JSON line a record becomes."""

from __future__ import annotations

import json
import logging

import asyncpg
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pm_shared import logs


@pytest.mark.parametrize(
    "outage",
    [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        ConnectionRefusedError(111, "Connect call failed"),
        RedisConnectionError("Connection closed by server."),
    ],
    ids=type,
)
def test_an_outage_is_a_warning_naming_the_error_without_a_traceback(
    outage: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="t"):
        logs.failure(logging.getLogger("t"), outage, "sweep of %s failed", "QRs")
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == f"sweep of QRs failed ({outage!r})"


def test_anything_else_is_an_error_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    table: dict[str, int] = {}
    try:
        table["missing"]
    except KeyError as exc:
        with caplog.at_level(logging.DEBUG, logger="t"):
            logs.failure(logging.getLogger("t"), exc, "sweep of %s failed", "QRs")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is KeyError
    line = json.loads(logs.JsonFormatter("svc").format(record))
    assert line["level"] == "ERROR" and line["msg"] == "sweep of QRs failed"
    assert "KeyError: 'missing'" in line["exc"]
