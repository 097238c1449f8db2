"""`pm up`: the whole fleet on this machine, in the foreground, as one combined log."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pm_shared import db, streams
from pm_shared.keys.crypto import Cipher
from pm_shared.settings import CommonSettings, SettingsError, load_settings
from pm_shared.streams.connection import connect
from pm_tools import devenv
from pm_tools.cli.dev_cmd import infrastructure_table, wide_console
from pm_tools.devenv.demo_key import demo_key
from pm_tools.devenv.envfile import KEY_VARIABLE

HOST = "127.0.0.1"
COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
# A child that ran this long before exiting is considered to have been healthy: its restart count resets.
STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
# Lines longer than this are cut; the default 64 KiB limit would be hit by a JSON log with a traceback.
LINE_LIMIT = 1 << 20
# After a child exits, how long its output may still trickle in (a grandchild may hold the pipe open).
DRAIN_S = 5.0


@dataclass(frozen=True)
class Child:
    """One process `pm up` runs: a service, or later a PSP sandbox."""

    name: str
    module: str
    port_var: str | None = None
    default_port: int | None = None
    # The gateway is the one the developer talks to; the table shows it first, as the API.
    api: bool = False
    # The services export Prometheus metrics; the PSP sandboxes (stand-ins for outside PSPs) do not.
    metrics: bool = True
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self) -> list[str]:
        # `python -m` with this interpreter works inside the venv whether or not its bin/ is on PATH.
        return [sys.executable, "-m", self.module]

    def port(self, environ: Mapping[str, str]) -> int | None:
        if self.port_var is None:
            return self.default_port
        raw = environ.get(self.port_var)
        if not raw:
            return self.default_port
        try:
            return int(raw)
        except ValueError:
            raise typer.BadParameter(f"{self.port_var}={raw!r} is not a port number") from None


# Everything `pm up` starts: the services, and the PSP sandboxes the adapters talk to.
FLEET: list[Child] = [
    Child("gateway", "pm_gateway", "PM_GATEWAY_PORT", 8080, api=True),
    Child("orchestrator", "pm_orchestrator", "PM_ORCHESTRATOR_PORT", 9101),
    Child("ledger-writer", "pm_ledger_writer", "PM_LEDGER_WRITER_PORT", 9102),
    Child("adapter-ipps", "pm_adapter_ipps", "PM_ADAPTER_IPPS_PORT", 9103),
    Child("adapter-qp", "pm_adapter_qp", "PM_ADAPTER_QP_PORT", 9104),
    Child("reconciler", "pm_reconciler", "PM_RECONCILER_PORT", 9105),
    Child("ipps-sandbox", "pm_sandbox_ipps", "PM_IPPS_SANDBOX_PORT", 9201, metrics=False),
    Child("qp-sandbox", "pm_sandbox_qp", "PM_QP_SANDBOX_PORT", 9202, metrics=False),
]

# The sandboxes' callbacks go to the gateway this run starts: (sandbox URL variable, gateway route,
# sandbox secret variable, gateway secret variable). Both sides default to the same secret.
CALLBACKS: tuple[tuple[str, str, str, str], ...] = (
    (
        "PM_IPPS_SANDBOX_CALLBACK_URL",
        "/v1/webhooks/ipps",
        "PM_IPPS_SANDBOX_CALLBACK_SECRET",
        "PM_GATEWAY_IPPS_CALLBACK_SECRET",
    ),
    (
        "PM_QP_SANDBOX_CALLBACK_URL",
        "/v1/webhooks/qp",
        "PM_QP_SANDBOX_SECRET",
        "PM_GATEWAY_QP_CALLBACK_SECRET",
    ),
)


def callback_wiring(children: Sequence[Child], environ: Mapping[str, str]) -> dict[str, str]:
    """Variables pointing the sandboxes' callbacks at the gateway, signed with the secret it checks.

    What the environment sets already is kept: a callback URL elsewhere, or two different secrets
    (to watch the gateway refuse forged callbacks). A secret set on one side only is given to the other.
    """
    gateway = next((child for child in children if child.name == "gateway"), None)
    if gateway is None:
        return {}  # nothing would answer: the sandboxes send no callbacks
    wiring: dict[str, str] = {}
    for url_var, route, sandbox_secret, gateway_secret in CALLBACKS:
        if not environ.get(url_var):
            wiring[url_var] = f"http://{HOST}:{gateway.port(environ)}{route}"
        shared = environ.get(sandbox_secret) or environ.get(gateway_secret)
        for var in (sandbox_secret, gateway_secret):
            if shared and not environ.get(var):
                wiring[var] = shared
    return wiring


def qp_token_wiring(environ: Mapping[str, str]) -> dict[str, str]:
    """The QP sandbox's secret is also the bearer token adapter-qp must send: one set without the
    other is given to the other, or every top-up would be refused (401) and dead-lettered."""
    sandbox, adapter = "PM_QP_SANDBOX_SECRET", "PM_ADAPTER_QP_QP_SECRET"
    if environ.get(sandbox) and not environ.get(adapter):
        return {adapter: environ[sandbox]}
    if environ.get(adapter) and not environ.get(sandbox):
        return {sandbox: environ[adapter]}
    return {}


def up(
    only: Annotated[
        str | None,
        typer.Option(
            "--only", help="Comma-separated services to start, e.g. gateway,orchestrator (default: all)."
        ),
    ] = None,
    json_logs: Annotated[
        bool, typer.Option("--json-logs", help="Services log JSON lines instead of text.")
    ] = False,
    grace: Annotated[
        float, typer.Option("--grace", min=0.0, help="Seconds between SIGTERM and SIGKILL when stopping.")
    ] = 30.0,
    restarts: Annotated[
        int,
        typer.Option(
            "--restarts", min=0, help="Restarts of a crashing service before the fleet stops (0: none)."
        ),
    ] = 3,
) -> None:
    """Run PM here: find or start Redis and PostgreSQL, migrate, provision streams, start the fleet.

    Redis and PostgreSQL come from PM_REDIS_URL / PM_DATABASE_URL, else a
    server on the default port, else the machine's installed server (started),
    else private instances under .pm/. Every service runs as a child process;
    their logs stream here, each line prefixed with its service.

    A service that exits on its own is reported with its exit code and
    restarted after 1, 2, 4, ... seconds; once it has crashed more than
    --restarts times (the count resets after a minute of running) the whole
    fleet stops and `pm up` exits 1.

    Ctrl-C or SIGTERM stops every service (SIGTERM, then SIGKILL after --grace
    seconds), stops the private Redis/PostgreSQL this run started, exits 0.
    """
    children = select(FLEET, only)
    code = asyncio.run(_up(children, json_logs=json_logs, grace=grace, max_restarts=restarts))
    if code:
        raise typer.Exit(code)


def select(fleet: Sequence[Child], only: str | None) -> list[Child]:
    """The children named in `--only` (in fleet order), or all of them."""
    if not only:
        return list(fleet)
    wanted = {name.strip().replace("_", "-") for name in only.split(",") if name.strip()}
    known = {child.name for child in fleet}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise typer.BadParameter(
            f"unknown service(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(sorted(known))}",
            param_hint="--only",
        )
    return [child for child in fleet if child.name in wanted]


async def _up(children: Sequence[Child], *, json_logs: bool, grace: float, max_restarts: int) -> int:
    console = wide_console()
    errors = Console(stderr=True, highlight=False)

    def fail(message: str) -> int:
        errors.print(Text(message, style="red"), soft_wrap=True)
        return 1

    try:
        settings = load_settings(CommonSettings)
    except SettingsError as exc:
        return fail(f"configuration: {exc}")
    busy = [
        f"port {port} ({child.port_var}) for {child.name} is already in use"
        for child in children
        if (port := child.port(os.environ)) is not None and await devenv.port_open(HOST, port)
    ]
    if busy:
        return fail("; ".join(busy) + ". Is another `pm up` running? Stop it, or set those variables.")

    try:
        infra = await devenv.ensure()
    except devenv.DevEnvError as exc:
        return fail(str(exc))
    try:
        console.print(infrastructure_table(infra))
        try:
            if await db.ensure_database(infra.database_url):
                console.print(f"created database {db.dsn_database(infra.database_url)}", markup=False)
            applied = await db.migrate(infra.database_url)
            console.print(f"migrations: {len(applied)} applied, schema up to date", markup=False)
            redis = connect(infra.redis_url)
            try:
                created = await streams.provision(redis, settings.stream_partitions)
            finally:
                await redis.aclose()
            console.print(f"streams: provisioned ({created} new consumer groups)", markup=False)
            home = devenv.default_home()
            key_encryption_key = os.environ.get(KEY_VARIABLE) or _kept_key(home / "env", infra)
            conn = await db.connect(infra.database_url)
            try:
                demo = await demo_key(conn, Cipher.from_setting(key_encryption_key), home / "demo-key.json")
            finally:
                await conn.close()
        except Exception as exc:
            # Whatever failed here, the fleet cannot start; say what, then still stop what this run started.
            return fail(f"setting up failed: {type(exc).__name__}: {exc}")

        env = _child_env(infra, json_logs=json_logs)
        env[KEY_VARIABLE] = key_encryption_key
        env.update(qp_token_wiring(env))
        env.update(callback_wiring(children, env))
        fleet = Fleet(children, env, console, grace=grace, max_restarts=max_restarts)
        console.print(fleet.table())
        console.print(
            f"demo key (admin; also in {home / 'demo-key.json'}): {demo.key_id} secret {demo.secret}",
            markup=False,
            soft_wrap=True,
        )
        return await fleet.run()
    finally:
        for what in await infra.stop():
            console.print(f"stopped {what}", markup=False, soft_wrap=True)


def _kept_key(env_file: Path, infra: devenv.DevEnv) -> str:
    """This checkout's key-encryption key: from the env file, else new and written there to keep."""
    if KEY_VARIABLE not in devenv.read_env_file(env_file):
        devenv.write_env_file(env_file, infra.env())
    return devenv.key_encryption_key(env_file)


def _child_env(infra: devenv.DevEnv, *, json_logs: bool) -> dict[str, str]:
    env = dict(os.environ)
    env.update(infra.env())
    env["PM_LOG_FORMAT"] = "json" if json_logs else "text"
    # Children write to a pipe; without this their lines would arrive in 8 KiB bursts.
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Fleet:
    """Runs the children, merges their output, restarts crashes, and stops them all on a signal."""

    def __init__(
        self,
        children: Sequence[Child],
        env: Mapping[str, str],
        console: Console,
        *,
        grace: float,
        max_restarts: int,
    ) -> None:
        self.children = list(children)
        self.env = dict(env)
        self.console = console
        self.grace = grace
        self.max_restarts = max_restarts
        self.hostname = socket.gethostname()
        self.width = max((len(child.name) for child in self.children), default=0)
        self.colours = {child.name: COLOURS[i % len(COLOURS)] for i, child in enumerate(self.children)}
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.failed = False

    def table(self) -> Table:
        table = Table(title="Fleet (Ctrl-C stops everything)", title_justify="left", show_edge=False)
        table.add_column("log prefix")
        table.add_column("where")
        for child in self.children:
            port = child.port(self.env)
            base = f"http://{HOST}:{port}" if port is not None else None
            if base is None:
                where = "(no HTTP port)"
            elif child.api:
                where = f"API {base}   health {base}/healthz   metrics {base}/metrics"
            elif not child.metrics:
                where = f"PSP sandbox {base}   health {base}/healthz"
            else:
                where = f"health {base}/healthz   metrics {base}/metrics"
            table.add_row(Text(f"{child.name} |", style=self.colours[child.name]), where)
        table.add_row("Redis", devenv.redact(self.env["PM_REDIS_URL"]))
        table.add_row("PostgreSQL", devenv.redact(self.env["PM_DATABASE_URL"]))
        return table

    async def run(self) -> int:
        """Run until a signal (0) or a child that keeps crashing (1); every child has exited on return."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal, sig)
        try:
            tasks = [asyncio.create_task(self._supervise(child)) for child in self.children]
            await self.stopping.wait()
            for proc in self.procs.values():
                _signal(proc, signal.SIGTERM)
            _, pending = await asyncio.wait(tasks, timeout=self.grace)
            if pending:
                self._say(None, f"killing what did not stop within {self.grace:g}s: {', '.join(self.procs)}")
                for proc in self.procs.values():
                    _signal(proc, signal.SIGKILL)
                await asyncio.gather(*pending)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        return 1 if self.failed else 0

    def _on_signal(self, sig: signal.Signals) -> None:
        # A repeat is not taken as "kill now": `uv run` forwards the terminal's Ctrl-C a second time.
        if self.stopping.is_set():
            self._say(None, f"{sig.name}: already stopping (SIGKILL after {self.grace:g}s)")
            return
        self._say(None, f"{sig.name}: stopping the fleet")
        self.stopping.set()

    async def _supervise(self, child: Child) -> None:
        loop = asyncio.get_running_loop()
        crashes = 0
        while not self.stopping.is_set():
            started = loop.time()
            try:
                proc = await self._spawn(child)
            except OSError as exc:
                self._say(child, f"could not start: {exc}; stopping the fleet")
                self.failed = True
                self.stopping.set()
                return
            self.procs[child.name] = proc
            if self.stopping.is_set():
                # The stop signal arrived while this child was being spawned, after the others were signalled.
                _signal(proc, signal.SIGTERM)
            pump = asyncio.create_task(self._pump(child, proc))
            code = await proc.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(pump), DRAIN_S)
            pump.cancel()
            del self.procs[child.name]
            if self.stopping.is_set():
                self._say(child, f"stopped (exit code {code})")
                return
            if loop.time() - started >= STABLE_AFTER_S:
                crashes = 0
            if crashes >= self.max_restarts:
                self._say(child, f"exited with code {code}; not restarting it again: stopping the fleet")
                self.failed = True
                self.stopping.set()
                return
            delay = min(2.0**crashes, MAX_BACKOFF_S)
            crashes += 1
            self._say(
                child,
                f"exited unexpectedly with code {code}; restart {crashes}/{self.max_restarts} in {delay:g}s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _spawn(self, child: Child) -> asyncio.subprocess.Process:
        env = {**self.env, **child.env, "PM_CONSUMER_NAME": f"{self.hostname}-{child.name}"}
        return await asyncio.create_subprocess_exec(
            *child.argv(),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            limit=LINE_LIMIT,
            # Its own process group: the terminal's Ctrl-C reaches only `pm up`, which then sends SIGTERM.
            process_group=0,
            preexec_fn=_die_with_parent(),
        )

    async def _pump(self, child: Child, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while True:
            try:
                line = await proc.stdout.readline()
            except ValueError:
                self._emit(child, f"[a line longer than {LINE_LIMIT} bytes was cut]")
                continue
            if not line:
                return
            self._emit(child, line.decode(errors="replace").rstrip("\r\n"))

    def _emit(self, child: Child, line: str) -> None:
        prefix = Text(f"{child.name:<{self.width}} | ", style=self.colours[child.name])
        self.console.print(prefix + Text(line), soft_wrap=True)

    def _say(self, child: Child | None, message: str) -> None:
        name = child.name if child is not None else "pm up"
        style = f"bold {self.colours[child.name]}" if child is not None else "bold"
        prefix = Text(f"{name:<{self.width}} | ", style=style)
        self.console.print(prefix + Text(message, style="bold"), soft_wrap=True)


def _signal(proc: asyncio.subprocess.Process, sig: signal.Signals) -> None:
    """Signal the child's whole process group, so helpers it started stop with it."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _die_with_parent() -> Callable[[], None] | None:
    """On Linux, children get SIGTERM if `pm up` itself dies (kill -9), instead of holding their ports."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM))

    return set_parent_death_signal
