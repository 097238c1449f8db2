"""pm_shared.psp.adapter: what both PSP adapters share (their calls' outcomes, backoff, subscriptions)."""

from __future__ import annotations

import asyncio

import pytest

from pm_shared.errors import RetryLater
from pm_shared.messages import PspHint, PspJob
from pm_shared.psp.adapter import calls, service
from pm_shared.streams import Delivery
from pm_shared.streams.names import IPPS_HINTS, IPPS_JOBS


async def test_backoff_waits_before_each_read_doubling_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    assert [n async for n in calls.backoff(0.2, 1.0, 5)] == [1, 2, 3, 4, 5]
    assert waits == [0.2, 0.4, 0.8, 1.0, 1.0]
    waits.clear()
    assert [n async for n in calls.backoff(0.2, 1.0, 3, wait_first=False)] == [1, 2, 3]
    assert waits == [0.2, 0.4]


def test_a_refusal_carries_the_psps_code_or_the_http_status() -> None:
    body = b'{"status": 422, "code": "ACCOUNT_CLOSED", "detail": "closed in 2019"}'
    refused = calls.refusal(422, body, body.decode())
    assert (refused.http_status, refused.code, refused.detail) == (422, "ACCOUNT_CLOSED", "closed in 2019")
    plain = calls.refusal(418, b"<html>teapot</html>", "<html>teapot</html>")
    assert (plain.code, plain.detail) == ("HTTP_418", "<html>teapot</html>")


def test_no_answer_from_a_psp_is_retried_later() -> None:
    assert issubclass(calls.Unavailable, RetryLater)


class Handlers:
    async def on_job(self, delivery: Delivery[PspJob]) -> None: ...

    async def on_hint(self, delivery: Delivery[PspHint]) -> None: ...


def test_an_adapter_reads_its_jobs_and_its_hints() -> None:
    handlers = Handlers()
    jobs, hints = service.subscriptions(IPPS_JOBS, IPPS_HINTS, handlers)
    assert (jobs.stream, jobs.handle) == (IPPS_JOBS.name, handlers.on_job)
    assert (hints.stream, hints.handle) == (IPPS_HINTS.name, handlers.on_hint)
