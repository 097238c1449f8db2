"""Find or start the Redis and PostgreSQL a developer's fleet runs against."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import fcntl
import getpass
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import redis.asyncio as aioredis
import redis.exceptions

DATABASE_NAME = "pm"
MIN_REDIS = (7, 0)
MIN_POSTGRES = 14

REDIS_INSTALL_HINT = (
    "install Redis 7 (Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis), "
    "or set PM_REDIS_URL to a running Redis ≥ 7"
)
POSTGRES_INSTALL_HINT = (
    "install PostgreSQL ≥ 14 (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), "
    "or set PM_DATABASE_URL to a running PostgreSQL ≥ 14"
)

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
# Programs that switch users live in sbin, which a non-login PATH may lack.
_SYSTEM_PATH_EXTRA = "/usr/sbin:/sbin:/usr/bin:/bin"
# Unix socket paths are limited to 107 bytes; `.s.PGSQL.<port>` takes 15 more.
_MAX_SOCKET_DIR = 90


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


@dataclass(frozen=True)
class DevEnv:
    redis: Endpoint
    postgres: Endpoint

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def redis_strategy(self) -> Strategy:
        return self.redis.strategy

    @property
    def database_strategy(self) -> Strategy:
        return self.postgres.strategy

    def env(self) -> dict[str, str]:
        return {"PM_REDIS_URL": self.redis_url, "PM_DATABASE_URL": self.database_url}

    async def stop(self) -> list[str]:
        """Stop the private instances this call started (never reused ones, never system servers)."""
        stopped: list[str] = []
        for name, endpoint in (("PostgreSQL", self.postgres), ("Redis", self.redis)):
            if endpoint.stop is not None:
                await endpoint.stop()
                stopped.append(f"private {name} at {redact(endpoint.url)}")
        return stopped


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


async def ensure(search: Search | None = None, environ: Mapping[str, str] | None = None) -> DevEnv:
    """Find or start Redis and PostgreSQL: env URL, local default port, system server, private instance."""
    search = search or Search.default(environ)
    env = os.environ if environ is None else environ
    errors: list[str] = []
    found: list[Endpoint] = []
    for finder in (find_redis, find_postgres):
        try:
            found.append(await finder(search, env))
        except DevEnvError as exc:
            errors.append(str(exc))
    if errors:
        for endpoint in found:
            if endpoint.stop is not None:
                await endpoint.stop()
        raise DevEnvError("\n".join(errors))
    return DevEnv(redis=found[0], postgres=found[1])


async def stop_private(home: Path) -> list[str]:
    """Stop every private instance under `home`, whoever started it; returns what was stopped."""
    stopped: list[str] = []
    pg = PrivatePostgres(home / "pg")
    if await pg.stop():
        stopped.append(f"PostgreSQL in {pg.dir}")
    rd = PrivateRedis(home / "redis")
    if await rd.stop():
        stopped.append(f"Redis in {rd.dir}")
    return stopped


# Redis


async def find_redis(search: Search, environ: Mapping[str, str]) -> Endpoint:
    configured = environ.get("PM_REDIS_URL")
    if configured:
        why = await redis_problem(configured)
        if why is not None:
            raise DevEnvError(
                f"PM_REDIS_URL={redact(configured)} does not answer: {why}. "
                "Start that Redis, correct the URL, or unset PM_REDIS_URL to let PM find or start one."
            )
        return Endpoint(configured, Strategy.ENV, "from PM_REDIS_URL")

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
    url = f"redis://{host}:{port}/0"
    state = "started" if started else "already running"
    detail = f"{state} in {private.dir}, log {private.log_file.name}"
    return Endpoint(
        url, Strategy.PRIVATE, detail, started, tuple(notes), private.stop_quietly if started else None
    )


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
class PrivateRedis:
    """A redis-server of our own under `.pm/redis`, with AOF so a developer's streams survive a restart."""

    dir: Path

    @property
    def pid_file(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.dir / "redis.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "instance.json"

    async def ensure(self, binary: str, host: str, timeout: float) -> tuple[int, bool]:
        """The port of the running instance, starting it when needed; True when this call started it."""
        async with _locked(self.dir.parent / "redis.lock"):
            port = _saved_port(self.state_file)
            alive = port and _pid_alive(_read_pid(self.pid_file))
            if alive and await redis_problem(f"redis://{host}:{port}/0") is None:
                return port, False
            self.dir.mkdir(parents=True, exist_ok=True)
            port = port if port and not await port_open(host, port) else free_port(host)
            # Relative paths: redis-server parses its arguments as config lines, where spaces in paths break.
            argv = [binary, "--daemonize", "yes", "--bind", host, "--port", str(port), "--dir", "."]
            argv += ["--pidfile", self.pid_file.name, "--logfile", self.log_file.name]
            argv += ["--appendonly", "yes", "--save", ""]
            code, output = await run(argv, cwd=self.dir, timeout=timeout)
            if code != 0:
                raise DevEnvError(f"private redis-server failed to start ({code}): {tail(output)}")
            _write_json(self.state_file, {"port": port, "binary": binary, "host": host})
            why = await wait_until(lambda: redis_problem(f"redis://{host}:{port}/0"), timeout)
            if why is not None:
                raise DevEnvError(
                    f"private redis-server on port {port} did not answer: {why}; see {self.log_file}"
                )
            return port, True

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

    async def stop_quietly(self) -> None:
        await self.stop()


# PostgreSQL


async def find_postgres(search: Search, environ: Mapping[str, str]) -> Endpoint:
    configured = environ.get("PM_DATABASE_URL")
    if configured:
        why = await postgres_problem(configured)
        if why is not None:
            raise DevEnvError(
                f"PM_DATABASE_URL={redact(configured)} does not answer: {why}. "
                "Start that PostgreSQL, correct the URL, "
                "or unset PM_DATABASE_URL to let PM find or start one."
            )
        return Endpoint(configured, Strategy.ENV, "from PM_DATABASE_URL")

    notes: list[str] = []
    host, port = search.host, search.postgres_port
    # Homebrew's server has no `postgres` role, only the installing user's.
    for user in dict.fromkeys(("postgres", _login_name())):
        local = f"postgresql://{user}@{host}:{port}/{DATABASE_NAME}"
        why = await postgres_problem(local)
        if why is None:
            return Endpoint(local, Strategy.LOCAL, f"already running on {host}:{port}", notes=tuple(notes))
        notes.append(f"{host}:{port} as {user}: {why}")
    local = f"postgresql://postgres@{host}:{port}/{DATABASE_NAME}"
    listening = await port_open(host, port)

    pg_ctlcluster = shutil.which("pg_ctlcluster", path=search.path)
    versions = _cluster_versions(search.postgres_etc)
    if not listening and pg_ctlcluster is not None and versions:
        version = versions[-1]
        argv = [pg_ctlcluster, "--skip-systemctl-redirect", version, "main", "start"]
        code, output = await run(argv, timeout=search.timeout)
        if code == 0:
            why = await wait_until(lambda: postgres_problem(local), search.timeout)
            if why is None:
                detail = f"started the installed cluster {version}/main on {host}:{port}"
                return Endpoint(local, Strategy.SYSTEM, detail, True, tuple(notes))
            notes.append(f"started cluster {version}/main, but {host}:{port} did not answer: {why}")
        else:
            notes.append(f"pg_ctlcluster {version} main start failed ({code}): {tail(output)}")

    bindir, why_not = await _postgres_bindir(search)
    if bindir is None:
        raise DevEnvError(_failure("PostgreSQL", [*notes, why_not], POSTGRES_INSTALL_HINT))
    private = PrivatePostgres(search.home / "pg")
    try:
        port, started = await private.ensure(bindir, host, search.timeout)
    except DevEnvError as exc:
        raise DevEnvError(_failure("PostgreSQL", [*notes, str(exc)], POSTGRES_INSTALL_HINT)) from None
    url = f"postgresql://postgres@{host}:{port}/{DATABASE_NAME}"
    state = "started" if started else "already running"
    detail = f"{state} in {private.dir}, log {private.log_file.name}"
    return Endpoint(
        url, Strategy.PRIVATE, detail, started, tuple(notes), private.stop_quietly if started else None
    )


async def postgres_problem(url: str, timeout: float = 3.0) -> str | None:
    """None when a PostgreSQL ≥ 14 accepts a connection at `url`, else why not."""
    try:
        conn = await asyncpg.connect(url, timeout=timeout)
    except asyncpg.InvalidCatalogNameError:
        # The server answers; `ensure_database` creates the database itself.
        maintenance = _with_database(url, "postgres")
        if maintenance == url:
            return f"database {DATABASE_NAME!r} missing and no maintenance database"
        return await postgres_problem(maintenance, timeout)
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return _reason(exc)
    try:
        version = conn.get_server_version()
    finally:
        await conn.close()
    if version.major < MIN_POSTGRES:
        return f"PostgreSQL {version.major} is too old: PM needs PostgreSQL ≥ {MIN_POSTGRES}"
    return None


@dataclass(frozen=True)
class PrivatePostgres:
    """A PostgreSQL cluster of our own under `.pm/pg`: trust auth, 127.0.0.1 only, socket inside."""

    dir: Path

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

    @property
    def state_file(self) -> Path:
        return self.dir / "instance.json"

    def running_port(self) -> int | None:
        """The port in postmaster.pid when that postmaster is alive."""
        try:
            lines = (self.data / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not lines[0].strip().isdigit() or not lines[3].strip().isdigit():
            return None
        return int(lines[3]) if _pid_alive(int(lines[0])) else None

    async def ensure(self, bindir: Path, host: str, timeout: float) -> tuple[int, bool]:
        """The running cluster's port, creating and starting it when needed; True if this call started it."""
        async with _locked(self.dir.parent / "pg.lock"):
            port = self.running_port()
            if port is not None and await postgres_problem(self._url(host, port)) is None:
                return port, False
            owner = _server_user()
            as_owner = _as_user(owner)
            self.dir.mkdir(parents=True, exist_ok=True)
            self.socket_dir.mkdir(exist_ok=True)
            if owner is not None:
                entry = pwd.getpwnam(owner)
                for path in (self.dir, self.socket_dir):
                    os.chown(path, entry.pw_uid, entry.pw_gid)
                code, _ = await run([*as_owner, "test", "-w", str(self.dir)], timeout=timeout)
                if code != 0:
                    raise DevEnvError(
                        f"PostgreSQL refuses to run as root and user {owner!r} cannot reach {self.dir}; "
                        "let others enter its parent directories or set PM_HOME to a directory they can reach"
                    )
            if not (self.data / "PG_VERSION").exists():
                # A data directory without PG_VERSION is the remnant of an interrupted initdb.
                shutil.rmtree(self.data, ignore_errors=True)
                argv = [*as_owner, str(bindir / "initdb"), "-D", str(self.data), "--auth=trust"]
                argv += [
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--no-instructions",
                ]
                code, output = await run(argv, cwd=self.dir, timeout=max(timeout, 120.0))
                if code != 0:
                    raise DevEnvError(f"initdb failed ({code}): {tail(output)}")
            port = _saved_port(self.state_file)
            port = port if port and not await port_open(host, port) else free_port(host)
            socket_dir = str(self.socket_dir)
            # Without a usable socket directory PostgreSQL still serves TCP, which is all PM uses.
            socket_dir = socket_dir if len(socket_dir) <= _MAX_SOCKET_DIR else ""
            options = f"-h {host} -p {port} -k {shlex.quote(socket_dir)}"
            argv = [*as_owner, str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)]
            argv += ["-w", "-t", str(int(timeout)), "-o", options, "start"]
            code, output = await run(argv, cwd=self.dir, timeout=timeout + 10)
            if code != 0:
                raise DevEnvError(f"pg_ctl start failed ({code}): {tail(output)}; see {self.log_file}")
            _write_json(self.state_file, {"port": port, "bindir": str(bindir), "host": host})
            why = await wait_until(lambda: postgres_problem(self._url(host, port)), timeout)
            if why is not None:
                raise DevEnvError(
                    f"private PostgreSQL on port {port} did not answer: {why}; see {self.log_file}"
                )
            return port, True

    async def stop(self) -> bool:
        """Stop the cluster if it runs; True when it did."""
        if self.running_port() is None:
            return False
        bindir = _read_json(self.state_file).get("bindir")
        pg_ctl = str(Path(str(bindir)) / "pg_ctl") if bindir else "pg_ctl"
        owner_uid = self.data.stat().st_uid
        owner = pwd.getpwuid(owner_uid).pw_name if os.geteuid() == 0 and owner_uid != 0 else None
        argv = [*_as_user(owner), pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"]
        code, output = await run(argv, cwd=self.dir, timeout=60.0)
        if code != 0:
            raise DevEnvError(f"pg_ctl stop failed ({code}): {tail(output)}")
        return True

    async def stop_quietly(self) -> None:
        await self.stop()

    @staticmethod
    def _url(host: str, port: int) -> str:
        return f"postgresql://postgres@{host}:{port}/{DATABASE_NAME}"


def _cluster_versions(etc: Path) -> list[str]:
    """Debian cluster versions that have a `main` cluster, oldest first."""
    try:
        names = [p.name for p in etc.iterdir() if (p / "main").is_dir()]
    except OSError:
        return []
    return sorted(names, key=_version)


async def _postgres_bindir(search: Search) -> tuple[Path | None, str]:
    """The newest directory with initdb, pg_ctl and postgres of PostgreSQL ≥ 14, or why there is none."""
    too_old: list[str] = []
    for directory in _bindir_candidates(search):
        _, output = await run([str(directory / "initdb"), "--version"], timeout=search.timeout)
        match = re.search(r"\)\s*(\d+)", output)
        major = int(match.group(1)) if match else 0
        if major >= MIN_POSTGRES:
            return directory, ""
        too_old.append(f"{directory} has PostgreSQL {major or 'of unknown version'}")
    if too_old:
        return None, f"no PostgreSQL ≥ {MIN_POSTGRES} programs ({'; '.join(too_old)})"
    return None, "initdb/pg_ctl/postgres are not installed"


def _bindir_candidates(search: Search) -> list[Path]:
    """Directories holding initdb, pg_ctl and postgres: those on the search path first, then the newest."""
    candidates: list[Path] = []
    for name in ("initdb", "pg_ctl"):
        found = shutil.which(name, path=search.path)
        if found is not None:
            # Debian links /usr/bin/pg_ctl to a wrapper; pg_ctl finds postgres beside its real file.
            candidates.append(Path(found).resolve().parent)
    root = Path("/")
    globbed = [p for pattern in search.postgres_bin_globs for p in root.glob(pattern.lstrip("/"))]
    candidates += sorted(globbed, key=lambda p: _version(str(p)), reverse=True)
    programs = ("initdb", "pg_ctl", "postgres")
    return [d for d in dict.fromkeys(candidates) if all(os.access(d / name, os.X_OK) for name in programs)]


def _server_user() -> str | None:
    """The unprivileged user PostgreSQL runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise DevEnvError("running as root and neither a 'postgres' nor a 'nobody' user exists to run PostgreSQL")


def _as_user(user: str | None) -> list[str]:
    if user is None:
        return []
    path = f"{os.environ.get('PATH', '')}{os.pathsep}{_SYSTEM_PATH_EXTRA}"
    runuser = shutil.which("runuser", path=path)
    if runuser is not None:
        return [runuser, "-u", user, "--"]
    setpriv = shutil.which("setpriv", path=path)
    if setpriv is not None:
        entry = pwd.getpwnam(user)
        return [setpriv, f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--"]
    raise DevEnvError(f"running as root: PostgreSQL must run as {user!r}, which needs runuser or setpriv")


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


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def redact(url: str) -> str:
    """The URL with its password hidden, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def tail(text: str, lines: int = 5) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


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


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # A container user without a passwd entry has no name; `postgres` is tried anyway.
        return "postgres"


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
