"""Redis: the one in PM_REDIS_URL, one on the default port, the installed server, or a private instance."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis
import redis.exceptions

from pm_tools.devenv.common import (
    DevEnvError,
    Endpoint,
    PrivateServer,
    Search,
    Strategy,
    _failure,
    _locked,
    _pid_alive,
    _read_pid,
    _reason,
    _runs,
    _saved_port,
    _version,
    configured,
    port_open,
    run,
    tail,
    wait_until,
)

MIN_REDIS = (7, 0)

REDIS_INSTALL_HINT = (
    "install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), "
    "or set PM_REDIS_URL to a running Redis ≥ 7"
)


async def find_redis(search: Search, environ: Mapping[str, str]) -> Endpoint:
    from_env = await configured(environ, "PM_REDIS_URL", "Redis", redis_problem)
    if from_env is not None:
        return from_env

    notes: list[str] = []
    host, port = search.host, search.redis_port
    local = f"redis://{host}:{port}/0"
    why = await redis_problem(local)
    if why is None:
        return Endpoint(local, Strategy.LOCAL, f"already running on {host}:{port}")
    notes.append(f"{host}:{port}: {why}")
    listening = await port_open(host, port)

    binary = shutil.which("redis-server", path=search.path)
    if binary is None:
        raise DevEnvError(_failure("Redis", notes + ["redis-server is not installed"], REDIS_INSTALL_HINT))

    if not listening and any(marker.exists() for marker in search.redis_system_markers):
        argv = [binary, "--daemonize", "yes", "--bind", host, "--port", str(port)]
        argv += ["--save", "", "--appendonly", "no"]
        # A daemon keeps its start directory; a checkout may be deleted under it, /tmp will not.
        code, output = await run(argv, cwd=Path(tempfile.gettempdir()), timeout=search.timeout)
        if code == 0:
            why = await wait_until(lambda: redis_problem(local), search.timeout)
            if why is None:
                return Endpoint(
                    local,
                    Strategy.SYSTEM,
                    f"started the installed redis-server on {host}:{port}",
                    True,
                    tuple(notes),
                )
            notes.append(f"started the installed redis-server, but {host}:{port} did not answer: {why}")
        else:
            notes.append(f"starting the installed redis-server failed ({code}): {tail(output)}")

    private = PrivateRedis(search.home / "redis")
    try:
        port, started = await private.ensure(binary, host, search.timeout)
    except DevEnvError as exc:
        raise DevEnvError(_failure("Redis", [*notes, str(exc)], REDIS_INSTALL_HINT)) from None
    return private.endpoint(f"redis://{host}:{port}/0", started, notes)


async def redis_problem(url: str, timeout: float = 2.0) -> str | None:
    """None when a Redis ≥ 7 answers PING at `url`, else why not."""
    try:
        client = aioredis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
    except ValueError as exc:
        return f"not a Redis URL ({exc})"
    try:
        await client.ping()
        info = await client.info("server")
    except (redis.exceptions.RedisError, OSError) as exc:
        return _reason(exc)
    finally:
        await client.aclose()
    version = str(info.get("redis_version", "0"))
    if _version(version) < MIN_REDIS:
        return f"Redis {version} is too old: PM needs Redis ≥ {MIN_REDIS[0]}"
    return None


@dataclass(frozen=True)
class PrivateRedis(PrivateServer):
    """A redis-server of our own under `.pm/redis`, with AOF so a developer's streams survive a restart."""

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    async def ensure(self, binary: str, host: str, timeout: float) -> tuple[int, bool]:
        """The port of the running instance, starting it when needed; True when this call started it."""
        async with _locked(self.dir.parent / "redis.lock"):
            port = _saved_port(self.state_file)
            alive = port and _pid_alive(_read_pid(self.pid_file))
            if alive and await redis_problem(f"redis://{host}:{port}/0") is None:
                return port, False
            self.dir.mkdir(parents=True, exist_ok=True)
            port = await self.port_to_use(host)
            # Relative paths: redis-server parses its arguments as config lines, where spaces in paths break.
            argv = [binary, "--daemonize", "yes", "--bind", host, "--port", str(port), "--dir", "."]
            argv += ["--pidfile", self.pid_file.name, "--logfile", self.log_file.name]
            argv += ["--appendonly", "yes", "--save", ""]
            code, output = await run(argv, cwd=self.dir, timeout=timeout)
            if code != 0:
                raise DevEnvError(f"private redis-server failed to start ({code}): {tail(output)}")
            state = {"port": port, "binary": binary, "host": host}
            return await self.answering(
                "redis-server", port, state, lambda: redis_problem(f"redis://{host}:{port}/0"), timeout
            )

    async def stop(self) -> bool:
        """Stop the instance if it runs; True when it did."""
        pid = _read_pid(self.pid_file)
        # A stale pid file may name a process that has since reused the pid: signal only a redis-server.
        if pid is None or not _pid_alive(pid) or not _runs(pid, "redis-server"):
            return False
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            if not _pid_alive(pid):
                return True
            await asyncio.sleep(0.1)
        os.kill(pid, signal.SIGKILL)
        return True
