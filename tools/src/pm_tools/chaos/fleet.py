"""The chaos run's fleet: every service and both PSP sandboxes as child processes, killed and restarted.

Each process runs in a slot (`orchestrator-2`) with a stable consumer name and port, as a pod keeps
its name across restarts, so a restarted process re-reads its own pending entries. Processes start
through `pm_tools.processes` (a clean `PM_*` environment, death with the run), with JSON logs to a
file of the run. A process that exits without being told to is restarted and counted as a crash.
Before a process is SIGKILLed its `/metrics` are scraped, so the counters it took with it
(reclaims, DLQ moves) still reach the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pm_shared.fleet import Member
from pm_tools import processes

READY_TIMEOUT_S = 60.0

# The counters of the streams runtime the report adds up, over every process that ever ran.
SCRAPED = (
    "pm_stream_claimed_total",
    "pm_stream_claim_deleted_total",
    "pm_stream_dlq_total",
    "pm_stream_backpressure_rejections_total",
)


def slot_name(member: Member, replica: int | None = None) -> str:
    """`gateway`, or `orchestrator-2` for the second of several replicas."""
    return member.name if replica is None else f"{member.name}-{replica}"


@dataclass(frozen=True)
class Slot:
    """One place in the fleet: a member of the roster under a stable name."""

    name: str
    member: Member
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def sandbox(self) -> bool:
        return self.member.kind == "sandbox"

    @property
    def ready_path(self) -> str:
        """A writer that may stand by is alive (healthz) but ready only while active: healthz is enough."""
        return "/healthz" if self.member.single_active else processes.ready_path(self.member)


@dataclass
class Running:
    slot: Slot
    port: int
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    starts: int = 0
    kills: int = 0
    crashes: list[int] = field(default_factory=list)
    """Exit codes of the exits nobody asked for."""
    expected_exit: bool = False
    metrics: Counter[tuple[str, str]] = field(default_factory=Counter)
    """What its earlier incarnations counted, summed (by metric name and stream key)."""

    @property
    def base(self) -> str:
        return processes.base_url(self.port)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def parse_counters(exposition: str) -> Counter[tuple[str, str]]:
    """The SCRAPED counters of one `/metrics` text, summed by (name, stream key)."""
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            if sample.name in SCRAPED:
                out[(sample.name, sample.labels.get("stream", ""))] += int(sample.value)
    return out


class Fleet:
    """Starts, kills, restarts and watches the members; `stop()` ends them all."""

    def __init__(self, slots: list[Slot], env: Mapping[str, str], workdir: Path) -> None:
        self.env = dict(env)
        self.workdir = workdir
        self.running: dict[str, Running] = {s.name: Running(s, processes.free_port()) for s in slots}
        self._watch: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=3.0)
        self.events: list[str] = []

    # -- processes ---------------------------------------------------------------------------------

    def url(self, slot: str) -> str:
        return self.running[slot].base

    def spawn(self, slot: str) -> Running:
        r = self.running[slot]
        variables = {
            **self.env,
            "PM_CONSUMER_NAME": f"chaos-{slot}",
            "PM_LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
            **r.slot.env,
        }
        env = processes.environment(r.slot.member, variables, port=r.port)
        log = self.workdir / f"{slot}.log"
        with log.open("ab") as out:
            out.write(f"--- start {r.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            r.popen = processes.spawn(r.slot.member, env, stdout=out, stderr=subprocess.STDOUT)
        r.started_at = time.monotonic()
        r.starts += 1
        r.expected_exit = False
        return r

    async def wait_ready(self, slot: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Poll `/readyz` (a sandbox or a writer that may stand by: `/healthz`) until it answers 200."""
        r = self.running[slot]
        path = r.slot.ready_path
        deadline = time.monotonic() + timeout
        while True:
            if r.popen is not None and r.popen.poll() is not None and not self._watching():
                raise RuntimeError(
                    f"{slot} exited with {r.popen.returncode} before it was ready; see {slot}.log"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await self._http.get(r.base + path)).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{slot} not ready after {timeout:g}s; see {self.workdir / (slot + '.log')}"
                )
            await asyncio.sleep(0.1)

    async def ready(self, slot: str) -> bool:
        with contextlib.suppress(httpx.HTTPError):
            return (await self._http.get(self.url(slot) + "/readyz")).status_code == 200
        return False

    async def scrape(self, slot: str) -> Counter[tuple[str, str]]:
        """The SCRAPED counters of the process in `slot` now (empty when it does not answer)."""
        r = self.running[slot]
        if r.slot.sandbox or not r.alive():
            return Counter()
        try:
            response = await self._http.get(r.base + "/metrics")
        except httpx.HTTPError:
            return Counter()
        return parse_counters(response.text) if response.status_code == 200 else Counter()

    async def kill(self, slot: str) -> int:
        """SIGKILL (after scraping its counters); returns the pid killed."""
        r = self.running[slot]
        r.metrics += await self.scrape(slot)
        assert r.popen is not None
        r.expected_exit = True
        pid = r.popen.pid
        with contextlib.suppress(ProcessLookupError):
            r.popen.kill()
        await asyncio.to_thread(r.popen.wait, 10)
        r.kills += 1
        return pid

    async def counters(self) -> Counter[tuple[str, str]]:
        """Every SCRAPED counter over every incarnation of every member: the earlier ones and now."""
        total: Counter[tuple[str, str]] = Counter()
        for slot, r in self.running.items():
            total += r.metrics
            total += await self.scrape(slot)
        return total

    # -- watching for crashes ----------------------------------------------------------------------

    def _watching(self) -> bool:
        return self._watch is not None and not self._watch.done()

    def watch(self) -> None:
        """Restart, in the background, any member that exits without being told to (a crash)."""
        self._watch = asyncio.create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while True:
            for slot, r in self.running.items():
                if r.popen is None or r.expected_exit:
                    continue
                code = r.popen.poll()
                if code is not None:
                    r.crashes.append(code)
                    self.events.append(f"{slot} exited by itself with code {code}; restarted")
                    self.spawn(slot)
            await asyncio.sleep(0.2)

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM every process, SIGKILL what is still running after `grace` seconds."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        live = [r for r in self.running.values() if r.alive()]
        for r in live:
            r.expected_exit = True
            assert r.popen is not None
            with contextlib.suppress(ProcessLookupError):
                r.popen.terminate()
        deadline = time.monotonic() + grace
        for r in live:
            assert r.popen is not None
            try:
                await asyncio.to_thread(r.popen.wait, max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                r.popen.kill()
                await asyncio.to_thread(r.popen.wait, 10)
        await self._http.aclose()
