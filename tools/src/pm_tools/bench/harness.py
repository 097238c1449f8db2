"""What every benchmark needs around what it measures: members of the fleet as processes, throw-away
databases, the benchmarks' Redis database, and percentiles.

A benchmark starts each process it needs with `started` (the launcher of `pm_tools.processes`, a
free port, our environment without our `PM_*` variables plus what it gives), and works on a
database made for the occasion (`database`: created, migrated, dropped afterwards) and on Redis
database `REDIS_DB` of the server it is given, deleting only the keys it made.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import secrets
import signal
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from redis.asyncio import Redis

from pm_shared.db import drop_database, ensure_database, migrate
from pm_shared.db.pool import with_database
from pm_shared.fleet import Member
from pm_tools import processes

REDIS_DB = 14
"""The Redis logical database reserved for the benchmarks (and their tests)."""
WRITER_LEASE_KEY = "pm:bench:ledger-writer:lease"
"""The lease a benchmark's ledger-writer takes (`PM_LEDGER_WRITER_LEASE_KEY`), in `REDIS_DB`."""
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
DELETE_CHUNK = 1_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def redis_url(url: str) -> str:
    """The server of `url`, database `REDIS_DB`."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "db"]
    if parts.scheme == "unix":
        return urlunsplit(parts._replace(query=urlencode([*query, ("db", str(REDIS_DB))])))
    return urlunsplit(parts._replace(path=f"/{REDIS_DB}", query=urlencode(query)))


def key_encryption_key() -> str:
    """A fresh `PM_KEY_ENCRYPTION_KEY` for one run's throw-away database."""
    return base64.b64encode(secrets.token_bytes(32)).decode()


def service_variables(
    database_url: str, redis_url: str, role: str, key_encryption_key: str | None = None
) -> dict[str, str]:
    """The `PM_*` variables every service of a benchmark's fleet gets: where its stores are, quiet
    logs, and a consumer name of its own (`role` tells the processes apart)."""
    variables = {
        "PM_REDIS_URL": redis_url,
        "PM_DATABASE_URL": database_url,
        "PM_LOG_LEVEL": "WARNING",
        "PM_CONSUMER_NAME": f"pm-bench-{role}-{secrets.token_hex(4)}",
    }
    if key_encryption_key is not None:
        variables["PM_KEY_ENCRYPTION_KEY"] = key_encryption_key
    return variables


# --- processes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """A started member, ready."""

    process: asyncio.subprocess.Process
    base: str
    """Its base URL (`http://127.0.0.1:<port>`)."""


def status(url: str) -> int | None:
    """The HTTP status `url` answers a GET with; None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return None


def tail(log: IO[bytes], lines: int = 20) -> str:
    """The last `lines` of a child's log file."""
    log.flush()
    log.seek(0)
    return "\n".join(log.read().decode(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def started(
    member: Member, variables: Mapping[str, str], label: str | None = None
) -> AsyncIterator[Running]:
    """`member` on a free port with `variables`, once its ready path answers 200; on exit, SIGTERM
    (SIGKILL after `STOP_TIMEOUT_S`). Its stderr is kept to quote when it exits too early or never
    gets ready; `label` names it in those errors (default: its name)."""
    name = label or member.name
    port = processes.free_port()
    base = processes.base_url(port)
    env = processes.environment(member, variables, port=port)
    with tempfile.TemporaryFile() as log:
        process = await processes.spawn_async(member, env, stdout=asyncio.subprocess.DEVNULL, stderr=log)
        try:
            await _ready(process, base + processes.ready_path(member), name, log)
            try:
                yield Running(process, base)
            except Exception as exc:
                if process.returncode is not None:  # what went wrong may be that it died
                    exc.add_note(f"the {name} had exited with {process.returncode}:\n{tail(log)}")
                raise
            if process.returncode is not None:
                raise RuntimeError(f"the {name} exited with {process.returncode}:\n{tail(log)}")
        finally:
            await _stop(process)


async def _ready(process: asyncio.subprocess.Process, url: str, name: str, log: IO[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while await asyncio.to_thread(status, url) != 200:
        if process.returncode is not None:
            raise RuntimeError(f"the {name} exited with {process.returncode}:\n{tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the {name} not ready after {READY_TIMEOUT_S:g}s:\n{tail(log)}")
        await asyncio.sleep(0.05)


async def _stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()


def cpu_seconds(pid: int, children: bool = False) -> float | None:
    """User + system CPU seconds of process `pid` (with `children`, plus its direct children's, as
    nginx's workers under its master), from /proc; None where there is no /proc or no such process."""
    pids = [pid]
    if children:
        try:
            pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return None
    total = 0.0
    for one in pids:
        try:
            # The command name (field 2) may hold spaces: the fields after its ")" are split safely.
            fields = Path(f"/proc/{one}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    return total


def postgres_cpu_seconds(database: str) -> float | None:
    """CPU seconds used so far by the PostgreSQL backends connected to `database` (their command lines
    name it), from /proc; None where there is no /proc. Backends that ended are not counted: read it
    while the connections that do the work are open (pools keep theirs)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    total = 0.0
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # A backend's title: "postgres: [<cluster>:] <user> <database> <client> <state>".
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").split()
        except OSError:
            continue
        if title[:1] == ["postgres:"] and database in title[1:4]:
            total += cpu_seconds(int(entry.name)) or 0.0
    return total


def cpu_delta_ms(
    before: Mapping[str, float | None], after: Mapping[str, float | None], per: int
) -> dict[str, float]:
    """CPU ms per `per` units of work (a request, a flow) of each process named in both samples; those
    /proc could not tell, left out."""
    found = {}
    for name, start in before.items():
        end = after.get(name)
        if start is not None and end is not None and per > 0:
            found[name] = (end - start) / per * 1000
    return found


def cpu_bound_ratio(baseline: Mapping[str, float], figure: Mapping[str, float]) -> float | None:
    """The throughput ratio figure ÷ baseline the CPU per unit of work predicts when the cores are
    saturated by this work alone: the baseline's CPU over the figure's, summed over the processes both
    measured (None when they share none). On a machine shared with other work, a steadier guide than
    two throughputs measured a few seconds apart."""
    common = baseline.keys() & figure.keys()
    spent = sum(figure[name] for name in common)
    return sum(baseline[name] for name in common) / spent if common and spent > 0 else None


# --- stores -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def database(server_dsn: str, label: str) -> AsyncIterator[str]:
    """A migrated database of its own on the server of `server_dsn` (`pm_bench_<label>_<random>`),
    dropped on exit: its DSN."""
    dsn = with_database(server_dsn, f"pm_bench_{label}_{secrets.token_hex(4)}")
    await ensure_database(dsn)
    try:
        await migrate(dsn)
        yield dsn
    finally:
        await drop_database(dsn)


async def delete_keys(redis: Redis, patterns: Iterable[str], keys: Sequence[str] = ()) -> None:
    """Delete the keys matching any of `patterns`, and `keys`."""
    found = [k for pattern in patterns async for k in redis.scan_iter(match=pattern)]
    found += keys
    for start in range(0, len(found), DELETE_CHUNK):
        await redis.delete(*found[start : start + DELETE_CHUNK])


# --- figures ------------------------------------------------------------------------------------


def percentile(ordered: Sequence[float], q: float) -> float:
    """The value below which a share `q` of `ordered` (sorted) lies; NaN when there is none."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stats(values_s: Iterable[float]) -> tuple[float, float, float, float]:
    """(p50, p95, p99, mean) of durations in seconds, in ms; NaN when there is none."""
    ordered = sorted(values_s)
    if not ordered:
        nan = float("nan")
        return nan, nan, nan, nan
    p50, p95, p99 = (percentile(ordered, q) * 1000 for q in (0.50, 0.95, 0.99))
    return p50, p95, p99, sum(ordered) / len(ordered) * 1000
