"""Fixtures of pm-adapter-ipps's tests: the IPPS sandbox and the adapter as real processes (`stack`),
payout jobs and what the adapter answered, recorded and paid.

Test modules import no conftest (pytest runs with `--import-mode=importlib`): they name these fixtures
and annotate them with the `Callable` types given in each docstring.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, cast

import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_shared import db
from pm_shared.fleet import ADAPTER_IPPS, IPPS_SANDBOX
from pm_shared.messages import Party, PspHint, PspJob, PspResult, new_message_id, now
from pm_shared.streams import Publisher
from pm_shared.streams.names import IPPS_HINTS, IPPS_JOBS
from pm_tools import processes
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Fleet, delete_streams

RESULTS_KEY = "{pm:psp:results:0}"
MOBILE = "0812345678"
"""The payee of every job unless a test names another."""

_result = msgspec.json.Decoder(PspResult)


@pytest.fixture
async def stack(fleet: Fleet, redis: Redis, tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[str]]]:
    """`Callable[..., Awaitable[str]]`: starts the sandbox (its variables in a mapping) and then the
    adapter pointed at it (its variables as keyword arguments); returns the sandbox's base URL."""
    await delete_streams(redis, IPPS_JOBS.name, "pm:psp:results")
    keys = [k async for k in redis.scan_iter(match="{pm:psp:*")]
    if keys:
        await redis.delete(*keys)
    sandboxes: list[subprocess.Popen[bytes]] = []

    async def start(sandbox_env: Mapping[str, str] | None = None, **adapter_env: str) -> str:
        port = processes.free_port()
        variables = {"PM_LOG_LEVEL": "WARNING", **(sandbox_env or {})}
        env = processes.environment(IPPS_SANDBOX, variables, port=port)
        with (tmp_path / "sandbox.stderr").open("wb") as stderr:
            sandboxes.append(processes.spawn(IPPS_SANDBOX, env, stderr=stderr))
        url = f"http://127.0.0.1:{port}"

        async def sandbox_up() -> bool:
            try:
                async with httpx.AsyncClient() as http:
                    return (await http.get(f"{url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await eventually(sandbox_up, timeout=15, what="the IPPS sandbox answers /healthz")
        settings = {
            "PM_ADAPTER_IPPS_IPPS_URL": url,
            "PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS": "1000",
            "PM_ADAPTER_IPPS_POLL_INITIAL_MS": "50",
            "PM_ADAPTER_IPPS_POLL_MAX_MS": "200",
            "PM_STREAM_RETRY_DELAY_MS": "200",
            **adapter_env,
        }
        await fleet.start(ADAPTER_IPPS.name, env=settings).wait_ready()
        return url

    try:
        yield start
    finally:
        for popen in sandboxes:
            popen.kill()
            popen.wait(10)
        # Dead-lettered jobs left behind would be reviewed by any orchestrator a later test starts.
        fleet.kill_all()
        await delete_streams(redis, IPPS_JOBS.name, IPPS_HINTS.name, "pm:psp:results")


def _job(amount: int, *, target: Party | None = None) -> PspJob:
    return PspJob(
        intent_id=str(uuid.uuid4()),
        message_id=new_message_id(),
        produced_at=now(),
        psp="ipps",
        action="payout",
        amount=amount,
        currency="THB",
        target=target or Party(kind="promptpay", proxy_type="MSISDN", proxy_value=MOBILE),
        idempotency_key=f"pm-payout-{uuid.uuid4().hex}",
    )


@pytest.fixture
def job() -> Callable[..., PspJob]:
    """`Callable[..., PspJob]`: `job(amount, *, target=None)`, a new payout job in THB (to MOBILE
    unless `target` says otherwise) with a fresh intent, message id and idempotency key."""
    return _job


@pytest.fixture
def publish(redis: Redis) -> Callable[[PspJob | PspHint], Awaitable[None]]:
    """`Callable[[PspJob | PspHint], Awaitable[None]]`: a job onto the jobs stream, a hint onto the
    hints stream."""

    async def send(message: PspJob | PspHint) -> None:
        await Publisher(redis).publish(IPPS_JOBS if isinstance(message, PspJob) else IPPS_HINTS, message)

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
def final_results(
    results_of: Callable[[str], Awaitable[list[PspResult]]],
) -> Callable[..., Awaitable[list[PspResult]]]:
    """`Callable[..., Awaitable[list[PspResult]]]`: `final_results(sent, count=1, timeout=20)`, the
    job's results once `count` final ones arrived (UNKNOWN ones before them included)."""

    async def wait(sent: PspJob, count: int = 1, timeout: float = 20) -> list[PspResult]:
        async def arrived() -> bool:
            finals = [r for r in await results_of(sent.message_id) if r.status != "UNKNOWN"]
            return len(finals) >= count

        await eventually(arrived, timeout=timeout, what=f"{count} final result(s) for job {sent.message_id}")
        return await results_of(sent.message_id)

    return wait


@pytest.fixture
def ledger() -> Callable[[str], Awaitable[dict[str, Any]]]:
    """`Callable[[str], Awaitable[dict[str, Any]]]`: what the sandbox at this base URL paid
    (`/_sim/ledger`: `paid`, `returned`, `transfers`)."""

    async def read(url: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            answer: dict[str, Any] = (await http.get(f"{url}/_sim/ledger")).json()
        return answer

    return read


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
