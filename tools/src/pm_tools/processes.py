"""Starting the fleet's processes: one command line, one environment, one free port, for every tool.

`pm up`, the chaos run, the benchmarks and the test fleet all start a member of the roster
(`pm_shared.fleet`) the same way: `python -m <module>` with this interpreter (it works inside the
venv whether or not its bin/ is on PATH), an environment built from ours without our `PM_*`
variables plus what the caller gives, its port in `PM_<PREFIX>PORT`, and (on Linux) a signal when
the tool that started it dies, so an orphan never holds a port.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import IO, Any

from pm_shared.fleet import Member

HOST = "127.0.0.1"

Output = int | IO[Any] | None
"""Where a child's stdout/stderr go: a file, `subprocess.PIPE`/`DEVNULL`/`STDOUT`, or ours (None)."""


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (bound to 0, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def base_url(port: int, host: str = HOST) -> str:
    """`http://host:port`: where a member started on `port` answers."""
    return f"http://{host}:{port}"


def ready_path(member: Member) -> str:
    """The path that answers 200 once `member` can work: `/readyz` for a service, `/healthz` for a
    sandbox (a stand-in with nothing to wait for has no readiness of its own)."""
    return "/readyz" if member.kind == "service" else "/healthz"


def command(member: Member) -> list[str]:
    """The command line that runs `member`."""
    return [sys.executable, "-m", member.module]


def environment(
    member: Member,
    variables: Mapping[str, str] | None = None,
    *,
    port: int | None = None,
    inherit_pm: bool = False,
) -> dict[str, str]:
    """Our environment for `member`: without our `PM_*` variables (unless `inherit_pm`), plus `variables`
    and, when given, its port. A child never picks up a setting by accident from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if inherit_pm or not k.startswith("PM_")}
    env.update(variables or {})
    if port is not None:
        env[member.port_variable] = str(port)
    return env


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """On Linux, a `preexec_fn` that has the child get `sig` when its parent dies; None elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1

    def set_parent_death_signal() -> None:
        libc.prctl(pr_set_pdeathsig, int(sig))

    return set_parent_death_signal


def spawn(
    member: Member,
    env: Mapping[str, str],
    *,
    stdout: Output = subprocess.DEVNULL,
    stderr: Output = subprocess.STDOUT,
    parent_death: signal.Signals = signal.SIGKILL,
) -> subprocess.Popen[bytes]:
    """Start `member` with `env` (see `environment`)."""
    return subprocess.Popen(
        command(member),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=die_with_parent(parent_death),
    )


async def spawn_async(
    member: Member,
    env: Mapping[str, str],
    *,
    stdout: Output = subprocess.DEVNULL,
    stderr: Output = subprocess.STDOUT,
    parent_death: signal.Signals = signal.SIGKILL,
    **options: Any,
) -> asyncio.subprocess.Process:
    """`spawn` for a caller that waits on the child in its event loop (`options`: `limit`,
    `process_group`, … as `asyncio.create_subprocess_exec` takes them)."""
    return await asyncio.create_subprocess_exec(
        *command(member),
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        preexec_fn=die_with_parent(parent_death),
        **options,
    )
