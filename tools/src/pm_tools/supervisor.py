"""`pm up`'s supervisor: runs members of the fleet as children, merges their output into one coloured
log, restarts a child that crashes, and stops them all on SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Mapping, Sequence

from rich.console import Console
from rich.text import Text

from pm_shared.fleet import Member
from pm_tools import processes
from pm_tools.devenv import FILE_VARIABLE

COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
# A child that ran this long before exiting is considered to have been healthy: its restart count resets.
STABLE_AFTER_S = 60.0
MAX_BACKOFF_S = 30.0
# Lines longer than this are cut; the default 64 KiB limit would be hit by a JSON log with a traceback.
LINE_LIMIT = 1 << 20
# After a child exits, how long its output may still trickle in (a grandchild may hold the pipe open).
DRAIN_S = 5.0


def colours(children: Sequence[Member]) -> dict[str, str]:
    """The colour of each child's log prefix."""
    return {child.name: COLOURS[i % len(COLOURS)] for i, child in enumerate(children)}


class Supervisor:
    """Runs the children, merges their output, restarts crashes, and stops them all on a signal."""

    def __init__(
        self,
        children: Sequence[Member],
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
        self.colours = colours(self.children)
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.stopping = asyncio.Event()
        self.failed = False

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

    def _give_up(self, child: Member, message: str) -> None:
        self._say(child, message)
        self.failed = True
        self.stopping.set()

    async def _supervise(self, child: Member) -> None:
        loop = asyncio.get_running_loop()
        crashes = 0
        while not self.stopping.is_set():
            started = loop.time()
            try:
                code = await self._run_once(child)
            except OSError as exc:
                self._give_up(child, f"could not start: {exc}; stopping the fleet")
                return
            if self.stopping.is_set():
                self._say(child, f"stopped (exit code {code})")
                return
            if loop.time() - started >= STABLE_AFTER_S:
                crashes = 0
            if crashes >= self.max_restarts:
                self._give_up(child, f"exited with code {code}; not restarting it again: stopping the fleet")
                return
            delay = min(2.0**crashes, MAX_BACKOFF_S)
            crashes += 1
            self._say(
                child,
                f"exited unexpectedly with code {code}; restart {crashes}/{self.max_restarts} in {delay:g}s",
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

    async def _run_once(self, child: Member) -> int:
        """Start `child`, pass its output on until it exits; its exit code."""
        proc = await self._spawn(child)
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
        return code

    async def _spawn(self, child: Member) -> asyncio.subprocess.Process:
        variables = {**self.env, "PM_CONSUMER_NAME": f"{self.hostname}-{child.name}"}
        env = processes.environment(child, variables, inherit_pm=True)
        env.pop(FILE_VARIABLE, None)  # the tools' own; a service would call it unknown
        return await processes.spawn_async(
            child,
            env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            # If `pm up` itself dies (kill -9), its children stop instead of holding their ports.
            parent_death=signal.SIGTERM,
            limit=LINE_LIMIT,
            # Its own process group: the terminal's Ctrl-C reaches only `pm up`, which then sends SIGTERM.
            process_group=0,
        )

    async def _pump(self, child: Member, proc: asyncio.subprocess.Process) -> None:
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

    def _emit(self, child: Member, line: str) -> None:
        prefix = Text(f"{child.name:<{self.width}} | ", style=self.colours[child.name])
        self.console.print(prefix + Text(line), soft_wrap=True)

    def _say(self, child: Member | None, message: str) -> None:
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
