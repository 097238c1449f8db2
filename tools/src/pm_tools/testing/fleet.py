"""A fleet of real service processes for cross-service tests (pytest plugin: the `fleet` fixture).

Any member of the roster (`pm_shared.fleet`) can be started, as `pm_tools.processes` starts it. Each
process gets a free port, the test Redis database, a unique consumer name and JSON logs on
stderr (captured to a file). The services provision and consume the fleet's real stream names, so a
test that inspects a stream first deletes that stream's keys (`{pm:<name>:*`) and then checks only
counts it controls. Every process is killed in the fixture's finalizer, pass or fail.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_shared import db
from pm_shared import fleet as roster
from pm_shared.fleet import Member
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import ALL_OPERATIONS, Permissions, create_key
from pm_shared.streams.connection import as_str, connect
from pm_shared.streams.names import stream_key, streams_read_by
from pm_tools import processes
from pm_tools.devenv.envfile import new_key_encryption_key
from pm_tools.processes import free_port
from pm_tools.testing.db import run
from pm_tools.testing.fixtures import test_redis_url

KEY_ENCRYPTION_KEY = new_key_encryption_key()


async def admin_key(database_url: str, description: str = "fleet tests: admin") -> tuple[str, str]:
    """A new admin key (every operation, every owner) stored under the fleet's key-encryption key:
    its id and secret, for a gateway the `fleet` fixture started."""
    conn = await db.connect(database_url)
    try:
        key, secret = await create_key(
            conn,
            Cipher.from_setting(KEY_ENCRYPTION_KEY),
            permissions=Permissions(operations=frozenset({ALL_OPERATIONS}), owners=None, admin=True),
            description=description,
        )
    finally:
        await conn.close()
    return key.key_id, secret


READY_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0


def streams_of(member: Member) -> tuple[str, ...]:
    """The logical streams `member` reads (none for the gateway and the sandboxes)."""
    return tuple(s.name for s in streams_read_by(member.group)) if member.group else ()


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def _get(url: str, timeout: float) -> Reply | None:
    """GET `url`; None when nothing answers (refused, reset, timed out)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, OSError):
        return None


async def get(url: str, timeout: float = 3.0) -> Reply | None:
    return await asyncio.to_thread(_get, url, timeout)


@dataclass
class Proc:
    member: Member
    popen: subprocess.Popen[bytes]
    port: int
    consumer: str
    stderr_path: Path
    stdout_path: Path

    @property
    def name(self) -> str:
        return self.member.name

    def url(self, path: str) -> str:
        return processes.base_url(self.port) + path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every stderr line as a JSON object; fails the test on a line that is not one."""
        out: list[dict[str, Any]] = []
        for number, line in enumerate(self.stderr().splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{self.name} stderr line {number} is not JSON: {line[:300]!r}")
            assert isinstance(record, dict), line
            out.append(record)
        return out

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr().splitlines()[-lines:])

    async def wait_exit(self, timeout: float) -> int:
        try:
            return await asyncio.to_thread(self.popen.wait, timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{self.name} still running after {timeout}s; log tail:\n{self.tail()}")

    async def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll /readyz (a sandbox: /healthz) until 200; fail if the process exits or the deadline passes."""
        deadline = time.monotonic() + timeout
        last: Reply | None = None
        while time.monotonic() < deadline:
            code = self.popen.poll()
            if code is not None:
                pytest.fail(f"{self.name} exited with {code} before it was ready:\n{self.tail()}")
            last = await get(self.url(processes.ready_path(self.member)), timeout=2.0)
            if last is not None and last.status == 200:
                return
            await asyncio.sleep(0.1)
        answer = f"{last.status} {last.text!r}" if last else "no answer"
        pytest.fail(f"{self.name} not ready after {timeout}s (last: {answer}):\n{self.tail()}")


@dataclass
class Fleet:
    redis_url: str
    database_url: str
    workdir: Path
    procs: list[Proc] = field(default_factory=list)

    def start(self, name: str, *, redis_url: str | None = None, env: dict[str, str] | None = None) -> Proc:
        """Start member `name` of the roster (a service or a sandbox) with a clean `PM_*` environment:
        the test servers, its own free port, a unique consumer name, JSON logs, then `env`."""
        member = roster.member(name)
        port = free_port()
        consumer = f"fleet-test-{name}-{uuid.uuid4().hex[:8]}"
        variables = {
            "PM_REDIS_URL": redis_url or self.redis_url,
            "PM_DATABASE_URL": self.database_url,
            "PM_CONSUMER_NAME": consumer,
            "PM_LOG_FORMAT": "json",
            "PM_KEY_ENCRYPTION_KEY": KEY_ENCRYPTION_KEY,
            f"PM_{member.prefix}HOST": processes.HOST,
            member.port_variable: str(port),
            **(env or {}),
        }
        tag = f"{name}-{len(self.procs)}"
        stderr_path = self.workdir / f"{tag}.stderr"
        stdout_path = self.workdir / f"{tag}.stdout"
        with stderr_path.open("wb") as err, stdout_path.open("wb") as out:
            popen = processes.spawn(member, processes.environment(member, variables), stdout=out, stderr=err)
        proc = Proc(member, popen, port, consumer, stderr_path, stdout_path)
        self.procs.append(proc)
        return proc

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.popen.kill()
        for proc in self.procs:
            try:
                proc.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass

    async def forget_consumers(self, redis: Redis) -> None:
        """Remove this test's consumers from their groups when they hold nothing pending."""
        for proc in self.procs:
            group = proc.member.group
            if group is None:
                continue
            for stream in streams_of(proc.member):
                key = stream_key(stream, 0)
                try:
                    rows = await redis.xinfo_consumers(key, group)
                except ResponseError:
                    continue  # no such stream or group
                for row in rows:
                    if as_str(row["name"]) == proc.consumer and int(row["pending"]) == 0:
                        await redis.xgroup_delconsumer(key, group, proc.consumer)


@pytest.fixture
async def fleet(redis_url: str, redis: Redis, database_url: str, tmp_path: Path) -> AsyncIterator[Fleet]:
    # A migrated throw-away database: services never migrate on their own (`pm migrate` does).
    f = Fleet(redis_url, database_url, tmp_path)
    try:
        yield f
    finally:
        f.kill_all()
        await f.forget_consumers(redis)


@contextmanager
def module_fleet(
    database_url: str, workdir: Path, *, streams: Sequence[str] = (), keys: Sequence[str] = ()
) -> Iterator[Fleet]:
    """The `fleet` fixture's fleet for a module-scoped fixture (started once, shared by the module's
    tests): `streams` cleaned first; at the end every process killed, its consumers forgotten and
    `keys` (a writer's lease, say) deleted."""
    f = Fleet(test_redis_url(), database_url, workdir)

    async def clean(before: bool) -> None:
        redis = connect(test_redis_url())
        try:
            if before:
                await delete_streams(redis, *streams)
            else:
                await f.forget_consumers(redis)
                if keys:
                    await redis.delete(*keys)
        finally:
            await redis.aclose()

    run(clean(before=True))
    try:
        yield f
    finally:
        f.kill_all()
        run(clean(before=False))


async def wait_ready(*procs: Proc) -> None:
    """Each of `procs` ready, in turn (`Proc.wait_ready`)."""
    for proc in procs:
        await proc.wait_ready()


async def delete_streams(redis: Redis, *streams: str) -> None:
    """Delete every key of these logical streams (partitions, DLQs, failure records) in the test database."""
    for stream in streams:
        keys = [k async for k in redis.scan_iter(match=f"{{{stream}:*")]
        if keys:
            await redis.delete(*keys)


def samples(exposition: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a Prometheus text exposition: (name, labels, value)."""
    return [
        (sample.name, dict(sample.labels), sample.value)
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    ]


def sample_value(exposition: str, name: str, **labels: str) -> float | None:
    """The value of the sample `name` with exactly `labels`; None when there is none."""
    for sample_name, sample_labels, value in samples(exposition):
        if sample_name == name and sample_labels == labels:
            return value
    return None
