"""PostgreSQL: the one in PM_DATABASE_URL, one on the default port, the installed cluster, or our own."""

from __future__ import annotations

import getpass
import os
import pwd
import re
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from pm_tools.devenv.common import (
    DevEnvError,
    Endpoint,
    PrivateServer,
    Search,
    Strategy,
    _failure,
    _locked,
    _pid_alive,
    _read_json,
    _reason,
    _version,
    configured,
    port_open,
    run,
    tail,
    wait_until,
)

DATABASE_NAME = "pm"
MIN_POSTGRES = 14

POSTGRES_INSTALL_HINT = (
    "install PostgreSQL ≥ 14 (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16), "
    "or set PM_DATABASE_URL to a running PostgreSQL ≥ 14"
)
# Programs that switch users live in sbin, which a non-login PATH may lack.
_SYSTEM_PATH_EXTRA = "/usr/sbin:/sbin:/usr/bin:/bin"
# Unix socket paths are limited to 107 bytes; `.s.PGSQL.<port>` takes 15 more.
_MAX_SOCKET_DIR = 90


async def find_postgres(search: Search, environ: Mapping[str, str]) -> Endpoint:
    from_env = await configured(environ, "PM_DATABASE_URL", "PostgreSQL", postgres_problem)
    if from_env is not None:
        return from_env

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

    bindir, why_not = await postgres_bindir(search)
    if bindir is None:
        raise DevEnvError(_failure("PostgreSQL", [*notes, why_not], POSTGRES_INSTALL_HINT))
    private = PrivatePostgres(search.home / "pg")
    try:
        port, started = await private.ensure(bindir, host, search.timeout)
    except DevEnvError as exc:
        raise DevEnvError(_failure("PostgreSQL", [*notes, str(exc)], POSTGRES_INSTALL_HINT)) from None
    return private.endpoint(f"postgresql://postgres@{host}:{port}/{DATABASE_NAME}", started, notes)


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
class PrivatePostgres(PrivateServer):
    """A PostgreSQL cluster of our own under `.pm/pg`: trust auth, 127.0.0.1 only, socket inside."""

    @property
    def data(self) -> Path:
        return self.dir / "data"

    @property
    def socket_dir(self) -> Path:
        return self.dir / "sock"

    @property
    def log_file(self) -> Path:
        return self.dir / "postgres.log"

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
            owner = server_user()
            as_owner = as_user(owner)
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
            port = await self.port_to_use(host)
            socket_dir = str(self.socket_dir)
            # Without a usable socket directory PostgreSQL still serves TCP, which is all PM uses.
            socket_dir = socket_dir if len(socket_dir) <= _MAX_SOCKET_DIR else ""
            options = f"-h {host} -p {port} -k {shlex.quote(socket_dir)}"
            argv = [*as_owner, str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_file)]
            argv += ["-w", "-t", str(int(timeout)), "-o", options, "start"]
            code, output = await run(argv, cwd=self.dir, timeout=timeout + 10)
            if code != 0:
                raise DevEnvError(f"pg_ctl start failed ({code}): {tail(output)}; see {self.log_file}")
            state = {"port": port, "bindir": str(bindir), "host": host}
            return await self.answering(
                "PostgreSQL", port, state, lambda: postgres_problem(self._url(host, port)), timeout
            )

    async def stop(self) -> bool:
        """Stop the cluster if it runs; True when it did."""
        if self.running_port() is None:
            return False
        bindir = _read_json(self.state_file).get("bindir")
        pg_ctl = str(Path(str(bindir)) / "pg_ctl") if bindir else "pg_ctl"
        owner_uid = self.data.stat().st_uid
        owner = pwd.getpwuid(owner_uid).pw_name if os.geteuid() == 0 and owner_uid != 0 else None
        argv = [*as_user(owner), pg_ctl, "-D", str(self.data), "-m", "fast", "-w", "stop"]
        code, output = await run(argv, cwd=self.dir, timeout=60.0)
        if code != 0:
            raise DevEnvError(f"pg_ctl stop failed ({code}): {tail(output)}")
        return True

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


async def postgres_bindir(search: Search) -> tuple[Path | None, str]:
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


def server_user() -> str | None:
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


def as_user(user: str | None) -> list[str]:
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


def _with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        # A container user without a passwd entry has no name; `postgres` is tried anyway.
        return "postgres"
