"""`pm up`: the whole fleet on this machine, in the foreground, as one combined log.

The fleet is the roster (`pm_shared.fleet`); what happens before it starts is `pm_tools.up`, running
it is `pm_tools.supervisor`. This module reads options and prints.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from pm_shared.fleet import FLEET, Member
from pm_shared.settings import CommonSettings, SettingsError, load_settings
from pm_tools import devenv, frontdoor, processes, up
from pm_tools.cli.common import infrastructure_table, wide_console
from pm_tools.devenv.envfile import without_file_variable
from pm_tools.supervisor import Supervisor, colours


def up_command(
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
    for child in children:
        try:
            up.port_of(child, os.environ)
        except ValueError as exc:
            raise typer.BadParameter(str(exc)) from None
    code = asyncio.run(_up(children, json_logs=json_logs, grace=grace, max_restarts=restarts))
    if code:
        raise typer.Exit(code)


def select(fleet: Sequence[Member], only: str | None) -> tuple[Member, ...]:
    """The members named in `--only` (in fleet order), or all of them."""
    if not only:
        return tuple(fleet)
    wanted = {name.strip().replace("_", "-") for name in only.split(",") if name.strip()}
    known = {child.name for child in fleet}
    unknown = sorted(wanted - known)
    if unknown or not wanted:
        raise typer.BadParameter(
            f"unknown service(s) {', '.join(unknown) or '(none given)'}; known: {', '.join(sorted(known))}",
            param_hint="--only",
        )
    return tuple(child for child in fleet if child.name in wanted)


def fleet_table(children: Sequence[Member], env: Mapping[str, str]) -> Table:
    """Where each child answers, under the log prefix its lines will carry."""
    styles = colours(children)
    table = Table(title="Fleet (Ctrl-C stops everything)", title_justify="left", show_edge=False)
    table.add_column("log prefix")
    table.add_column("where")
    for child in children:
        base = processes.base_url(up.port_of(child, env))
        if child.api:
            where = f"API {base}   health {base}/healthz   metrics {base}/metrics"
        elif not child.metrics:
            where = f"sandbox {base}   health {base}/healthz"
        else:
            where = f"health {base}/healthz   metrics {base}/metrics"
        table.add_row(Text(f"{child.name} |", style=styles[child.name]), where)
    table.add_row("Redis", devenv.redact(env["PM_REDIS_URL"]))
    table.add_row("PostgreSQL", devenv.redact(env["PM_DATABASE_URL"]))
    return table


@contextlib.contextmanager
def _front_door(
    children: Sequence[Member], env: Mapping[str, str], say: Callable[[str], None]
) -> Iterator[None]:
    """nginx in front of the gateway for end users, while the fleet runs, when nginx is installed."""
    door = up.front_door(children, env)
    if door is None:
        yield
        return
    if frontdoor.installed() is None:
        say(f"front door: not started, no nginx ({frontdoor.INSTALL_HINT}); /v1/me needs it")
        yield
        return
    nginx = frontdoor.start(door, devenv.default_home() / "nginx")
    say(f"front door (nginx, for end users: /v1/me with an Auth Center token): http://{door.listen}")
    try:
        yield
    finally:
        nginx.terminate()
        try:
            nginx.wait(10)
        except subprocess.TimeoutExpired:
            nginx.kill()


async def _up(children: Sequence[Member], *, json_logs: bool, grace: float, max_restarts: int) -> int:
    console = wide_console()
    errors = Console(stderr=True, highlight=False)

    def fail(message: str) -> int:
        errors.print(Text(message, style="red"), soft_wrap=True)
        return 1

    def say(message: str) -> None:
        console.print(message, markup=False, soft_wrap=True)

    try:
        settings = load_settings(CommonSettings, environ=without_file_variable())
    except SettingsError as exc:
        return fail(f"configuration: {exc}")
    busy = await up.busy_ports(children, os.environ)
    if busy:
        return fail("; ".join(busy) + ". Is another `pm up` running? Stop it, or set those variables.")

    try:
        infra = await devenv.ensure()
    except devenv.DevEnvError as exc:
        return fail(str(exc))
    try:
        console.print(infrastructure_table(infra))
        try:
            ready = await up.prepare(infra, settings, say)
        except Exception as exc:
            # Whatever failed here, the fleet cannot start; say what, then still stop what this run started.
            return fail(f"setting up failed: {type(exc).__name__}: {exc}")
        env = up.fleet_env(infra, children, ready.key_encryption_key, json_logs=json_logs)
        console.print(fleet_table(children, env))
        say(f"demo key (admin; also in {ready.demo_file}): {ready.demo.key_id} secret {ready.demo.secret}")
        supervisor = Supervisor(children, env, console, grace=grace, max_restarts=max_restarts)
        with _front_door(children, env, say):
            return await supervisor.run()
    finally:
        for what in await infra.stop():
            say(f"stopped {what}")
