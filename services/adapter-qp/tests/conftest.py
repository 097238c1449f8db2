"""Fixtures of pm-adapter-qp's tests: QP sandboxes and the adapter as real processes (`sandbox`,
`stack`), collect jobs and what the adapter answered, recorded and called, and what QP holds (the
sandbox also plays the payer).

Test modules import no conftest (pytest runs with `--import-mode=importlib`): they name these fixtures
and annotate them with the `Callable` types given in each docstring.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared import db
from pm_shared.fleet import ADAPTER_QP, QP_SANDBOX
from pm_shared.messages import Party, PspHint, PspJob, PspResult, new_message_id, now, psp_key
from pm_shared.psp import sbp_links as links
from pm_shared.streams import Publisher
from pm_shared.streams.names import QP_HINTS, QP_JOBS
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, Proc, delete_streams, get, sample_value

RESULTS_KEY = "{pm:psp:results:0}"
SECRET = "qp-sandbox-secret"  # the sandbox's default: the adapter's default must match it
AUTH = {"Authorization": f"Bearer {SECRET}"}
AMOUNT = 150_000  # 1 500.00 RUB in kopecks

_result = msgspec.json.Decoder(PspResult)


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """`Callable[[], Awaitable[str]]`: starts a QP sandbox on a free port with its default settings;
    returns its base URL."""
    started: list[subprocess.Popen[bytes]] = []

    async def start() -> str:
        port = processes.free_port()
        env = processes.environment(QP_SANDBOX, port=port)
        with (tmp_path / f"sandbox-{len(started)}.stderr").open("wb") as stderr:
            started.append(processes.spawn(QP_SANDBOX, env, stderr=stderr))
        url = f"http://127.0.0.1:{port}"

        async def up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(up, timeout=15, what="the QP sandbox answers /healthz")
        return url

    try:
        yield start
    finally:
        for popen in started:
            popen.kill()
            popen.wait(10)


@pytest.fixture
async def stack(
    fleet: Fleet, redis: Redis, sandbox: Callable[[], Awaitable[str]]
) -> AsyncIterator[Callable[..., Awaitable[tuple[str, Proc]]]]:
    """`Callable[..., Awaitable[tuple[str, Proc]]]`: starts a sandbox and then the adapter pointed at
    it (fast timeouts and sweep unless its variables, as keyword arguments, say otherwise); returns
    the sandbox's base URL and the adapter's process."""
    await delete_streams(redis, QP_JOBS.name, QP_HINTS.name, "pm:psp:results")

    async def start(**adapter_env: str) -> tuple[str, Proc]:
        url = await sandbox()
        settings = {
            "PM_ADAPTER_QP_QP_URL": url,
            "PM_ADAPTER_QP_REQUEST_TIMEOUT_MS": "1000",
            "PM_ADAPTER_QP_POLL_INITIAL_MS": "50",
            "PM_ADAPTER_QP_POLL_MAX_MS": "200",
            "PM_ADAPTER_QP_SWEEP_INTERVAL_MS": "200",
            "PM_ADAPTER_QP_SWEEP_MAX_IDLE_MS": "400",
            "PM_STREAM_RETRY_DELAY_MS": "200",
            **adapter_env,
        }
        proc = fleet.start(ADAPTER_QP.name, env=settings)
        await proc.wait_ready()
        return url, proc

    try:
        yield start
    finally:
        # Dead-lettered jobs left behind would be reviewed by any orchestrator a later test starts.
        fleet.kill_all()
        await delete_streams(redis, QP_JOBS.name, QP_HINTS.name, "pm:psp:results")


def _job(
    amount: int = AMOUNT, *, currency: str = "RUB", purpose: str | None = "top-up", psp: str = "qp"
) -> PspJob:
    intent_id = str(uuid.uuid4())
    return PspJob(
        intent_id=intent_id,
        message_id=new_message_id(),
        produced_at=now(),
        psp=psp,
        action="collect",
        amount=amount,
        currency=currency,
        target=Party(kind="user", id="u-2001"),
        idempotency_key=psp_key(intent_id, "psp_collect"),
        purpose=purpose,
    )


@pytest.fixture
def job() -> Callable[..., PspJob]:
    """`Callable[..., PspJob]`: `job(amount=150_000, *, currency="RUB", purpose="top-up", psp="qp")`,
    a new collect job with a fresh intent, message id and idempotency key."""
    return _job


@pytest.fixture
def publish(redis: Redis) -> Callable[[PspJob | PspHint], Awaitable[None]]:
    """`Callable[[PspJob | PspHint], Awaitable[None]]`: a job onto the jobs stream, a hint onto the
    hints stream."""

    async def send(message: PspJob | PspHint) -> None:
        await Publisher(redis).publish(QP_JOBS if isinstance(message, PspJob) else QP_HINTS, message)

    return send


@pytest.fixture
def results_of(redis: Redis) -> Callable[[str], Awaitable[list[PspResult]]]:
    """`Callable[[str], Awaitable[list[PspResult]]]`: the results published for a job (its message
    id) so far, oldest first."""

    async def read(job_id: str) -> list[PspResult]:
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", await redis.xrange(RESULTS_KEY))
        found = [_result.decode(fields[b"m"]) for _, fields in entries]
        return [r for r in found if r.job_id == job_id]

    return read


@pytest.fixture
def wait_results(
    results_of: Callable[[str], Awaitable[list[PspResult]]],
) -> Callable[..., Awaitable[list[PspResult]]]:
    """`Callable[..., Awaitable[list[PspResult]]]`: `wait_results(sent, *, final=0, pending=0,
    timeout=10)`, the job's results once at least `final` final and `pending` PENDING ones arrived."""

    async def wait(sent: PspJob, *, final: int = 0, pending: int = 0, timeout: float = 10) -> list[PspResult]:
        async def arrived() -> bool:
            statuses = [r.status for r in await results_of(sent.message_id)]
            return sum(s != "PENDING" for s in statuses) >= final and statuses.count("PENDING") >= pending

        what = f"{final} final and {pending} PENDING result(s) for job {sent.message_id}"
        await eventually(arrived, timeout=timeout, what=what)
        return await results_of(sent.message_id)

    return wait


async def _qp(url: str, method: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
        return await http.request(method, path)


async def _qr_of_order(url: str, order: str) -> dict[str, Any] | None:
    response = await _qp(url, "GET", "/v1/qrs?" + str(httpx.QueryParams({"order": order})))
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.fixture
def qr_of_order() -> Callable[[str, str], Awaitable[dict[str, Any] | None]]:
    """`Callable[[str, str], Awaitable[dict[str, Any] | None]]`: the QR the sandbox at this base URL
    holds for an order (an idempotency key), or None."""
    return _qr_of_order


async def _payer(url: str, qr_id: str, action: str) -> None:
    response = await _qp(url, "POST", f"/v1/sandbox/qrs/{qr_id}/{action}")
    assert response.status_code == 200, response.text


@pytest.fixture
def payer() -> Callable[[str, str, str], Awaitable[None]]:
    """`Callable[[str, str, str], Awaitable[None]]`: `payer(url, qr_id, action)`, the payer at the
    sandbox at `url` does `action` (`pay`, `reject`, `expire`) to the QR."""
    return _payer


@pytest.fixture
def tx_row(database_url: str) -> Callable[[str], Awaitable[dict[str, Any]]]:
    """`Callable[[str], Awaitable[dict[str, Any]]]`: the `pm.psp_tx_map` row of an idempotency key
    (asserted to exist)."""

    async def read(key: str) -> dict[str, Any]:
        conn = await db.connect(database_url)
        try:
            row = await conn.fetchrow("SELECT * FROM pm.psp_tx_map WHERE idempotency_key = $1", key)
        finally:
            await conn.close()
        assert row is not None, f"no psp_tx_map row for {key}"
        return dict(row)

    return read


async def _calls(proc: Proc, operation: str, outcome: str) -> float:
    reply = await get(proc.url("/metrics"))
    assert reply is not None and reply.status == 200
    count = sample_value(
        reply.text, "pm_psp_call_seconds_count", psp="qp", operation=operation, outcome=outcome
    )
    return count or 0.0


@pytest.fixture
def calls() -> Callable[[Proc, str, str], Awaitable[float]]:
    """`Callable[[Proc, str, str], Awaitable[float]]`: `calls(adapter, operation, outcome)`, how many
    `operation` calls to QP ended with `outcome`, from the adapter's /metrics."""
    return _calls


@pytest.fixture
def registrations() -> Callable[[Proc], Awaitable[float]]:
    """`Callable[[Proc], Awaitable[float]]`: how many registrations the adapter sent QP, whatever
    their outcome."""

    async def count(proc: Proc) -> float:
        total = 0.0
        for outcome in ("ok", "refused", "conflict", "unavailable", "not_found"):
            total += await _calls(proc, "register", outcome)
        return total

    return count


def _assert_pending(result: PspResult, sent: PspJob) -> str:
    assert (result.status, result.intent_id, result.psp, result.failure_code) == (
        "PENDING",
        sent.intent_id,
        "qp",
        None,
    )
    assert result.payment_link is not None and result.psp_reference is not None
    link = links.parse(result.payment_link)  # crc checked
    assert (link.type, link.amount, link.currency, link.qr_id) == (
        "02",
        sent.amount,
        "RUB",
        result.psp_reference,
    )
    assert result.payment_link.startswith(f"https://qr.nspk.ru/{result.psp_reference}?")
    assert result.expires_at is not None
    ttl = result.expires_at - datetime.now(UTC)
    assert timedelta(seconds=500) < ttl <= timedelta(seconds=600)  # qr_ttl_s, 600 by default
    return result.psp_reference


@pytest.fixture
def assert_pending() -> Callable[[PspResult, PspJob], str]:
    """`Callable[[PspResult, PspJob], str]`: asserts that a result is a PENDING answer to the job with
    a valid link for its amount; returns the QR id."""
    return _assert_pending
