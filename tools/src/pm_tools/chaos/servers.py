"""The chaos run's own Redis and PostgreSQL: private servers on free ports in the run's directory.

Never the machine's shared servers: only these are restarted. Redis runs with AOF fsynced on every
write (`--appendonly yes --appendfsync always`), so a restart loses nothing acknowledged; it is
restarted gracefully (SIGTERM, which makes it write and exit) and started again on the same port and
directory. PostgreSQL is a `PrivatePostgres` (initdb and start as an unprivileged user when we are
root) stopped with `pg_ctl stop -m fast` (every session cut), kept down a few seconds — a restart or
a failover as the services meet it — and started again.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from pm_tools.devenv import (
    DATABASE_NAME,
    DevEnvError,
    PrivatePostgres,
    Search,
    postgres_bindir,
    postgres_problem,
    redis_problem,
    run,
    tail,
)
from pm_tools.devenv.postgres_server import as_user, server_user
from pm_tools.processes import HOST, die_with_parent, free_port

START_TIMEOUT_S = 60.0


class ServersUnavailable(Exception):
    """The programs a chaos run needs are missing, or its servers would not start (exit code 2)."""


@dataclass
class ChaosRedis:
    """A redis-server child process of the run, with AOF always on."""

    dir: Path
    binary: str
    port: int = field(default_factory=lambda: free_port(HOST))
    popen: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @classmethod
    def find(cls, directory: Path) -> ChaosRedis:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServersUnavailable(
                "redis-server is not installed (Debian/Ubuntu: apt-get install redis-server; "
                "macOS: brew install redis): the chaos run starts a private Redis of its own"
            )
        return cls(directory, binary)

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    async def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        argv = [self.binary, "--bind", HOST, "--port", str(self.port), "--dir", ".", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--logfile", "redis.log"]
        argv += ["--daemonize", "no", "--protected-mode", "no"]
        self.popen = subprocess.Popen(  # noqa: ASYNC220 - starts at once, never waited on here
            argv,
            cwd=self.dir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent(),
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            why = await redis_problem(self.url, timeout=1.0)
            if why is None:
                return
            if self.popen.poll() is not None or time.monotonic() > deadline:
                log = (
                    (self.dir / "redis.log").read_text(errors="replace")
                    if (self.dir / "redis.log").exists()
                    else ""
                )
                raise ServersUnavailable(
                    f"private redis-server on port {self.port} did not start: {why}; {tail(log)}"
                )
            await asyncio.sleep(0.1)

    async def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM (Redis writes what it must and exits), SIGKILL past `timeout`."""
        popen = self.popen
        if popen is None or popen.poll() is not None:
            return
        popen.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(popen.wait, timeout)
        except subprocess.TimeoutExpired:
            popen.kill()
            await asyncio.to_thread(popen.wait, 10)

    async def restart(self) -> float:
        """Stop gracefully and start again on the same port and directory; returns the downtime (s)."""
        began = time.monotonic()
        await self.stop()
        await self.start()
        self.restarts += 1
        return time.monotonic() - began


@dataclass
class ChaosPostgres:
    """A private PostgreSQL cluster of the run (trust auth, 127.0.0.1 only)."""

    dir: Path
    bindir: Path
    port: int = 0
    restarts: int = 0

    @classmethod
    async def find(cls, directory: Path) -> ChaosPostgres:
        bindir, why_not = await postgres_bindir(Search.default())
        if bindir is None:
            raise ServersUnavailable(
                f"no PostgreSQL server programs ({why_not}); install PostgreSQL ≥ 14 (Debian/Ubuntu: "
                "apt-get install postgresql): the chaos run starts a private PostgreSQL of its own"
            )
        return cls(directory, bindir)

    @property
    def private(self) -> PrivatePostgres:
        return PrivatePostgres(self.dir)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{DATABASE_NAME}"

    async def start(self) -> None:
        try:
            self.port, _ = await self.private.ensure(self.bindir, HOST, START_TIMEOUT_S)
        except DevEnvError as exc:
            raise ServersUnavailable(f"private PostgreSQL did not start: {exc}") from None

    def _pg_ctl(self, *args: str) -> list[str]:
        return [*as_user(server_user()), str(self.bindir / "pg_ctl"), "-D", str(self.private.data), *args]

    async def restart(self, down_s: float = 0.0) -> float:
        """`pg_ctl stop -m fast` (every connection is cut), `down_s` with no server, then started
        again on the same port; returns the downtime (s), until PostgreSQL answers again."""
        began = time.monotonic()
        port = self.port
        code, output = await run(
            self._pg_ctl("-m", "fast", "-w", "-t", "60", "stop"), cwd=self.dir, timeout=90.0
        )
        if code != 0:
            raise RuntimeError(f"pg_ctl stop failed ({code}): {tail(output)}")
        await asyncio.sleep(down_s)
        await self.start()  # the saved port again, unless something took it meanwhile
        if self.port != port:
            raise RuntimeError(
                f"PostgreSQL came back on port {self.port}, not {port}: the fleet cannot follow"
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while (why := await postgres_problem(self.url)) is not None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not answer after its restart: {why}")
            await asyncio.sleep(0.1)
        self.restarts += 1
        return time.monotonic() - began

    async def stop(self) -> None:
        try:
            await self.private.stop()
        except Exception:  # best effort at the end of a run; the directory is removed anyway
            pass


def prepare_dir(path: Path) -> Path:
    """The run's directory, reachable by the unprivileged PostgreSQL user when we are root."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        path.chmod(0o755)
    return path
