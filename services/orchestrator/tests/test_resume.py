"""The resume sweep outlives a failed pass: the next pass tries again, and a stop request ends it."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from pm_orchestrator.resume import Resumer


class Flaky(Resumer):
    """A resumer whose passes fail as listed, then succeed."""

    def __init__(self, failures: list[BaseException]) -> None:
        nothing = cast(Any, None)
        super().__init__(nothing, nothing, nothing, resume_after_s=1, interval_s=0.01)
        self.failures = failures
        self.passes = 0

    async def sweep(self, before: datetime, stop: asyncio.Event | None = None) -> int:
        self.passes += 1
        if self.failures:
            raise self.failures.pop(0)
        return 0


async def test_an_outage_or_a_bug_in_one_pass_does_not_end_the_sweeps(
    caplog: pytest.LogCaptureFixture,
) -> None:
    resumer = Flaky([RedisConnectionError("Redis went away"), KeyError("a bug")])
    stop = asyncio.Event()
    with caplog.at_level(logging.WARNING, logger="pm_orchestrator.resume"):
        running = asyncio.create_task(resumer.run(stop))
        while resumer.passes < 4:
            assert not running.done(), running
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(running, 5)
    levels = [(r.levelname, r.exc_info is not None) for r in caplog.records]
    # The outage is a warning without a traceback; the bug an error with one.
    assert levels[:2] == [("WARNING", False), ("ERROR", True)], levels
    assert running.exception() is None
