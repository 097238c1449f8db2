"""What `pm bench` measured, as data: every benchmark fills these structs, and `report` writes
them out (JSON, markdown, plots).

A `Section` per benchmark module (streams runtime, ledger, gateway, saga, PSP, merchant charges, front
door) holds:

- `Benchmark`s: one figure each (throughput, and latency percentiles where the benchmark measures
  them), beside the baseline measured in the same run when there is one, the ratio of the two, and
  the goal the figure is held to (met or not), or why it was skipped;
- `StageSet`s: where an intent's time goes, stage by stage (the saga's runs, the PSP run's types);
- `LoadSweep`s: achieved throughput and latency percentiles at several offered loads.

Figures that could not be measured (no intent settled, say) are None, never NaN: JSON has no NaN.
"""

from __future__ import annotations

import math
from datetime import datetime

import msgspec

SCHEMA = 1
"""Bumped when a field changes meaning or goes away."""


def finite(value: float | None) -> float | None:
    """`value`, or None when it is None, NaN or infinite."""
    return value if value is not None and math.isfinite(value) else None


def known(values: dict[str, float | None]) -> dict[str, float]:
    """`values` without those that are None, NaN or infinite."""
    return {name: value for name, value in values.items() if finite(value) is not None and value is not None}


class Benchmark(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One measured figure beside its same-run baseline."""

    name: str
    unit: str
    """Of `throughput` and `baseline`: "msg/s", "transfers/s", "requests/s", "settled/s"…"""
    throughput: float | None
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    baseline_name: str | None = None
    """What the figure is compared with, measured in the same run (or, when `note` says so, computed)."""
    baseline: float | None = None
    ratio: float | None = None
    """`throughput` / `baseline`."""
    goal: str | None = None
    goal_met: bool | None = None
    """None: no goal, or the figure is not held to it."""
    note: str | None = None
    extra: dict[str, float] = msgspec.field(default_factory=dict)
    """Other figures of the same measurement, by name (units in the name)."""
    skipped: str | None = None
    """Why the figure was not measured at all (nginx not installed, say): not held to its goal, and no
    failure."""


class StageTimes(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None


class StageSet(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The consecutive stages of one run (or one intent type of a run): their means add up to the
    total's; their percentiles need not."""

    group: str
    """Stage sets of one group are plotted side by side, on one scale."""
    name: str
    stages: list[StageTimes]
    total: StageTimes


class LoadPoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    offered: float
    """Requests/s offered (open loop)."""
    accepted: float | None
    """Requests/s answered with acceptance."""
    achieved: float | None
    """What came out of the system per second (for the saga: settled intents/s)."""
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    rejected: int = 0
    """Refused under back-pressure (503)."""
    errors: int = 0


class LoadSweep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    name: str
    unit: str
    """Of offered, accepted and achieved."""
    latency: str
    """What the latency percentiles measure, from where to where."""
    points: list[LoadPoint]
    p99_goal_ms: float | None = None


class Section(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What one benchmark module measured."""

    name: str
    description: str
    benchmarks: list[Benchmark] = msgspec.field(default_factory=list)
    stages: list[StageSet] = msgspec.field(default_factory=list)
    sweeps: list[LoadSweep] = msgspec.field(default_factory=list)
    goals_met: bool | None = None


class Machine(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    cpu_count: int | None
    cpu_model: str | None
    memory_bytes: int | None
    system: str
    """Operating system, release and architecture."""
    python: str
    redis: str | None
    """The server's own answer (INFO server)."""
    postgresql: str | None
    """The server's own answer (SHOW server_version)."""


class BenchRun(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One `pm bench` invocation."""

    schema: int = SCHEMA
    date: datetime
    """When the run started, in UTC."""
    commit: str
    """`git rev-parse --short HEAD`, with `-dirty` when tracked files had changes; `unknown` outside git."""
    machine: Machine
    settings: dict[str, str | int | float | bool]
    seconds: float
    """Wall time of the whole run."""
    sections: list[Section]
    load_start: list[float] | None = None
    """The machine's load average (1, 5, 15 min) when the run started: other work sharing the cores."""
    load_end: list[float] | None = None
    """The same when it ended."""

    @property
    def goals_met(self) -> bool:
        return all(s.goals_met is not False for s in self.sections)

    def stage_sets(self) -> list[StageSet]:
        return [stage_set for section in self.sections for stage_set in section.stages]

    def sweeps(self) -> list[LoadSweep]:
        return [sweep for section in self.sections for sweep in section.sweeps]


def encode(run: BenchRun) -> bytes:
    """Indented JSON, keys in field order, ending with a newline."""
    return msgspec.json.format(msgspec.json.encode(run), indent=2) + b"\n"


def decode(data: bytes) -> BenchRun:
    return msgspec.json.decode(data, type=BenchRun)
