"""What both servers share: the search, the endpoint found, a private instance, errors, helpers for
processes, ports and files."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import json
import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pm_shared.db import redact_dsn
from pm_tools.processes import free_port

# Where distributions put PostgreSQL's server programs, which are often not on PATH (Debian, RHEL, Homebrew).
POSTGRES_BIN_GLOBS: tuple[str, ...] = (
    "/usr/lib/postgresql/*/bin",
    "/usr/pgsql-*/bin",
    "/opt/homebrew/opt/postgresql@*/bin",
    "/usr/local/opt/postgresql@*/bin",
)
# Files a packaged (system) Redis leaves behind; without one, a stopped Redis is started privately instead,
# so `pm dev stop` can stop it again.
REDIS_SYSTEM_MARKERS: tuple[Path, ...] = (
    Path("/etc/redis"),
    Path("/etc/redis.conf"),
    Path("/lib/systemd/system/redis-server.service"),
    Path("/usr/lib/systemd/system/redis.service"),
    Path("/etc/init.d/redis-server"),
)


class Strategy(enum.StrEnum):
    ENV = "env"
    LOCAL = "local"
    SYSTEM = "system"
    PRIVATE = "private"


class DevEnvError(Exception):
    """No Redis or PostgreSQL could be found or started; the message says what to do."""


@dataclass(frozen=True)
class Search:
    """Where to look for servers and programs; the defaults describe this machine, tests narrow them."""

    home: Path
    path: str
    host: str = "127.0.0.1"
    redis_port: int = 6379
    postgres_port: int = 5432
    postgres_bin_globs: tuple[str, ...] = POSTGRES_BIN_GLOBS
    postgres_etc: Path = Path("/etc/postgresql")
    redis_system_markers: tuple[Path, ...] = REDIS_SYSTEM_MARKERS
    timeout: float = 60.0

    @classmethod
    def default(cls, environ: Mapping[str, str] | None = None) -> Search:
        env = os.environ if environ is None else environ
        return cls(home=default_home(env), path=env.get("PATH", os.defpath))


@dataclass(frozen=True)
class Endpoint:
    """One server the fleet will use, and how it was found."""

    url: str
    strategy: Strategy
    detail: str
    started: bool = False
    # Why the strategies before this one were passed over, for the curious reader of `pm dev ensure`.
    notes: tuple[str, ...] = ()
    stop: Callable[[], Awaitable[None]] | None = field(default=None, repr=False, compare=False)


def default_home(environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """`PM_HOME`, else `.pm` in the workspace root (the directory holding uv.lock), else in the cwd."""
    env = os.environ if environ is None else environ
    if env.get("PM_HOME"):
        return Path(env["PM_HOME"]).absolute()
    here = (cwd or Path.cwd()).absolute()
    for directory in (here, *here.parents):
        if (directory / "uv.lock").is_file() or (directory / ".git").exists():
            return directory / ".pm"
    return here / ".pm"


async def configured(
    environ: Mapping[str, str], variable: str, what: str, problem: Callable[[str], Awaitable[str | None]]
) -> Endpoint | None:
    """The server `variable` names (it must answer), or None when the variable is not set."""
    url = environ.get(variable)
    if not url:
        return None
    why = await problem(url)
    if why is not None:
        raise DevEnvError(
            f"{variable}={redact(url)} does not answer: {why}. Start that {what}, correct the URL, "
            f"or unset {variable} to let PM find or start one."
        )
    return Endpoint(url, Strategy.ENV, f"from {variable}")


@dataclass(frozen=True)
class PrivateServer:
    """A server of our own under `dir` (`.pm/redis`, `.pm/pg`): its log, its saved port, its endpoint."""

    dir: Path

    @property
    def log_file(self) -> Path:
        raise NotImplementedError

    @property
    def state_file(self) -> Path:
        return self.dir / "instance.json"

    async def port_to_use(self, host: str) -> int:
        """The port it had last time, unless something else took it meanwhile; else a free one."""
        port = _saved_port(self.state_file)
        return port if port and not await port_open(host, port) else free_port(host)

    async def stop(self) -> bool:
        raise NotImplementedError

    async def answering(
        self,
        what: str,
        port: int,
        state: Mapping[str, object],
        problem: Callable[[], Awaitable[str | None]],
        timeout: float,
    ) -> tuple[int, bool]:
        """After a start on `port`: its state saved for next time, then (port, True) once `problem`
        reports none; DevEnvError naming `what` and the log when it never does."""
        _write_json(self.state_file, state)
        why = await wait_until(problem, timeout)
        if why is not None:
            raise DevEnvError(f"private {what} on port {port} did not answer: {why}; see {self.log_file}")
        return port, True

    async def stop_quietly(self) -> None:
        await self.stop()

    def endpoint(self, url: str, started: bool, notes: Sequence[str]) -> Endpoint:
        """How `find_*` reports it: started by this call (then stopped by `DevEnv.stop`) or reused."""
        state = "started" if started else "already running"
        detail = f"{state} in {self.dir}, log {self.log_file.name}"
        stop = self.stop_quietly if started else None
        return Endpoint(url, Strategy.PRIVATE, detail, started, tuple(notes), stop)


# Shared helpers


async def run(argv: Sequence[str], *, cwd: Path | None = None, timeout: float = 60.0) -> tuple[int, str]:
    """Run a command to completion; returns its exit code and combined output."""
    # Output goes to a file, not a pipe: a daemon the command starts inherits it and would hold a pipe open.
    with tempfile.TemporaryFile() as out:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=asyncio.subprocess.STDOUT, cwd=cwd
            )
        except OSError as exc:
            return 127, str(exc)
        try:
            code = await asyncio.wait_for(proc.wait(), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            out.seek(0)
            return 124, f"timed out after {timeout:g}s: {out.read().decode(errors='replace').strip()}"
        out.seek(0)
        return code, out.read().decode(errors="replace").strip()


async def wait_until(problem: Callable[[], Awaitable[str | None]], timeout: float) -> str | None:
    """Poll `problem` until it reports none (None) or `timeout` passes (the last problem)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        why = await problem()
        if why is None or loop.time() >= deadline:
            return why
        await asyncio.sleep(0.2)


async def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether anything accepts TCP connections on host:port."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    except (OSError, TimeoutError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def redact(url: str) -> str:
    """The URL (Redis, PostgreSQL, a ledger) with its password hidden, for messages."""
    try:
        return redact_dsn(url)
    except ValueError:
        return "<unparsable URL>"


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def _failure(what: str, notes: list[str], hint: str) -> str:
    tried = "; ".join(n for n in notes if n)
    return f"no {what} found or started ({tried}): {hint}"


def _reason(exc: BaseException) -> str:
    return str(exc).strip().rstrip(".") or type(exc).__name__


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", text)[:3]) or (0,)


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _runs(pid: int, program: str) -> bool:
    """Whether process `pid` runs `program`; True where /proc cannot tell (macOS)."""
    try:
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return not Path("/proc/self").exists()
    return comm.startswith(program[:15])


def _pid_alive(pid: int | None) -> bool:
    if pid is None or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A daemon whose parent never reaps it lingers as a zombie; it no longer serves anything.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[:1] != ["Z"]


def _read_json(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _saved_port(path: Path) -> int:
    port = _read_json(path).get("port")
    return port if isinstance(port, int) else 0


def _write_json(path: Path, data: Mapping[str, object]) -> None:
    path.write_text(json.dumps(data) + "\n")


@contextlib.asynccontextmanager
async def _locked(path: Path) -> AsyncIterator[None]:
    """Serialise concurrent `ensure` calls on one private instance across processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)
