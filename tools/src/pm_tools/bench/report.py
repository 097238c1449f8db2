"""`pm bench`'s report: one run's figures (`model.BenchRun`) written as JSON, markdown tables and
PNG plots, side by side, named after the day and the commit measured:

- `<YYYY-MM-DD>-<commit>.json`: everything, `model.decode` reads it back;
- `<…>.md`: the machine, a summary table of every benchmark beside its same-run baseline, the load
  sweep and where the time goes, with links to the plots;
- `<…>-throughput.png`: achieved (and accepted) throughput against offered load;
- `<…>-latency.png`: p50/p95/p99 against offered load, with the p99 goal;
- `<…>-stages.png`: time per stage, a stacked bar per run (or intent type), one panel per group.

The plots are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pm_shared import db
from pm_shared.streams import connect
from pm_tools.bench.model import Benchmark, BenchRun, LoadSweep, Machine, StageSet, StageTimes, encode

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OUT_DIR = Path("bench/results")
PLOTS = ("throughput", "latency", "stages")
DPI = 110
FOOTNOTE = "one run; figures on a shared machine move from run to run"


# --- naming -------------------------------------------------------------------------------------


def commit_label(cwd: Path | None = None) -> str:
    """`git rev-parse --short HEAD`, with `-dirty` when tracked files have changes (untracked ones,
    such as earlier results, do not count); `unknown` outside a git work tree or without git."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    if not head:
        return "unknown"
    return f"{head}-dirty" if status.strip() else head


def stem(date: datetime, commit: str) -> str:
    """`<YYYY-MM-DD>-<commit>`: the name every file of one run starts with."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", commit) or "unknown"
    return f"{date:%Y-%m-%d}-{safe}"


def paths(run: BenchRun, out_dir: Path) -> dict[str, Path]:
    """Where each file of `run` goes: keys `json`, `md` and each of `PLOTS`."""
    base = stem(run.date, run.commit)
    found = {"json": out_dir / f"{base}.json", "md": out_dir / f"{base}.md"}
    found.update({plot: out_dir / f"{base}-{plot}.png" for plot in PLOTS})
    return found


# --- the machine --------------------------------------------------------------------------------


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str | None:
    """The first `model name` of /proc/cpuinfo (ARM: `Hardware`, `Model`), else what Python knows."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        text = ""
    for field in ("model name", "Hardware", "Model", "cpu model"):
        match = re.search(rf"^{field}\s*:\s*(.+)$", text, re.MULTILINE)
        if match:
            return re.sub(r"\s+", " ", match.group(1)).strip()
    return platform.processor() or None


def memory_bytes(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """MemTotal of /proc/meminfo, else the physical pages × the page size."""
    try:
        match = re.search(r"^MemTotal:\s+(\d+)\s*kB", meminfo.read_text(), re.MULTILINE)
        if match:
            return int(match.group(1)) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


async def redis_version(url: str) -> str | None:
    redis = connect(url, name="pm-bench-report")
    try:
        info = await redis.info("server")
        return str(info["redis_version"])
    except Exception:  # a fact of the report, never a reason to lose the run's figures
        return None
    finally:
        await redis.aclose()


async def postgresql_version(dsn: str) -> str | None:
    # The server's own database: the benchmarks use throw-away ones, and PM's may not exist (it did
    # not on the machine of the 2026-12-07 run, whose report said "PostgreSQL unknown").
    server = db.with_database(dsn, "postgres")
    try:
        conn = await db.connect(server, application_name="pm-bench-report", connect_timeout_s=5.0)
    except Exception:  # as above
        return None
    try:
        return str(await conn.fetchval("SHOW server_version"))
    except Exception:  # as above
        return None
    finally:
        await conn.close()


async def machine(redis_url: str, database_url: str) -> Machine:
    """This machine, and the servers' own versions (None when one does not answer)."""
    return Machine(
        cpu_count=os.cpu_count(),
        cpu_model=cpu_model(),
        memory_bytes=memory_bytes(),
        system=f"{platform.system()} {platform.release()} {platform.machine()}",
        python=platform.python_version(),
        redis=await redis_version(redis_url),
        postgresql=await postgresql_version(database_url),
    )


def load_average() -> list[float] | None:
    """The load average over 1, 5 and 15 minutes, where the system tells it."""
    try:
        return [round(load, 2) for load in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _load(load: list[float] | None) -> str:
    return " / ".join(f"{x:.2f}" for x in load) if load else "unknown"


def describe(m: Machine) -> str:
    cpus = f"{m.cpu_count} × {m.cpu_model}" if m.cpu_count and m.cpu_model else (m.cpu_model or "?")
    memory = f"{m.memory_bytes / 2**30:,.1f} GiB memory" if m.memory_bytes else "memory unknown"
    return (
        f"{cpus} ({m.cpu_count or '?'} CPUs), {memory}, {m.system}; Python {m.python}; "
        f"Redis {m.redis or 'unknown'}; PostgreSQL {m.postgresql or 'unknown'}"
    )


# --- markdown -----------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return ""
    shown = round(value, 1)
    return f"{shown:,.0f}" if abs(shown) >= 100 or float(shown).is_integer() else f"{shown:,.1f}"


def _rate(value: float | None, unit: str) -> str:
    return "" if value is None else f"{_number(value)} {unit}"


def _ms(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.1f} ms" if abs(value) < 10 else f"{value:,.0f} ms"


def _ratio(value: float | None) -> str:
    if value is None:
        return ""
    return f"×{value:,.1f}" if value >= 10 else f"{value * 100:,.1f} %"


def _goal(b: Benchmark) -> str:
    if b.skipped is not None:
        return f"{b.goal}: skipped" if b.goal else "skipped"
    if b.goal is None:
        return ""
    verdict = {True: "met", False: "MISSED", None: "not held"}[b.goal_met]
    return f"{b.goal}: {verdict}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _row(cells: Iterable[str]) -> str:
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


def summary_table(run: BenchRun) -> list[str]:
    lines = [
        _row(["benchmark", "figure", "baseline (same run)", "ratio", "p50", "p95", "p99", "goal"]),
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for section in run.sections:
        lines.append(_row([f"**{section.name}**", "", "", "", "", "", "", ""]))
        for b in section.benchmarks:
            baseline = ""
            if b.baseline is not None:
                baseline = f"{_rate(b.baseline, b.unit)} ({b.baseline_name})" if b.baseline_name else ""
            lines.append(
                _row(
                    [
                        b.name,
                        _rate(b.throughput, b.unit) or ("SKIPPED" if b.skipped else ""),
                        baseline,
                        _ratio(b.ratio),
                        _ms(b.p50_ms),
                        _ms(b.p95_ms),
                        _ms(b.p99_ms),
                        _goal(b),
                    ]
                )
            )
    return lines


def sweep_table(sweep: LoadSweep) -> list[str]:
    lines = [
        _row(
            [
                f"offered ({sweep.unit})",
                "accepted",
                "achieved",
                "achieved ÷ offered",
                "p50",
                "p95",
                "p99",
                "refused (503)",
                "errors",
            ]
        ),
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p in sweep.points:
        lines.append(
            _row(
                [
                    _number(p.offered),
                    _number(p.accepted),
                    _number(p.achieved),
                    _ratio(p.achieved / p.offered if p.achieved is not None and p.offered else None),
                    _ms(p.p50_ms),
                    _ms(p.p95_ms),
                    _ms(p.p99_ms),
                    f"{p.rejected:,}",
                    f"{p.errors:,}",
                ]
            )
        )
    return lines


def stages_table(stage_sets: Sequence[StageSet]) -> list[str]:
    lines = [_row(["run", "stage", "p50", "p95", "p99", "mean"]), "|---|---|---:|---:|---:|---:|"]
    for stage_set in stage_sets:
        for s in [*stage_set.stages, stage_set.total]:
            name = f"**{s.name}**" if s is stage_set.total else s.name
            lines.append(
                _row([stage_set.name, name, _ms(s.p50_ms), _ms(s.p95_ms), _ms(s.p99_ms), _ms(s.mean_ms)])
            )
    return lines


def _details(b: Benchmark) -> str | None:
    parts = [f"SKIPPED (not a failure): {b.skipped}"] if b.skipped else []
    parts += [b.note] if b.note else []
    parts += [f"{name} {_number(value)}" for name, value in b.extra.items()]
    return f"- {b.name}: " + "; ".join(parts) + "." if parts else None


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def markdown(run: BenchRun, plots: Mapping[str, str] | None = None) -> str:
    """The report as markdown; `plots`: plot name → link (only those given are shown)."""
    plots = plots or {}
    date = run.date
    settings = ", ".join(f"`{name}` {value}" for name, value in run.settings.items())
    lines = [
        f"# `pm bench`, {date:%Y-%m-%d %H:%M} UTC, commit {run.commit}",
        "",
        f"Machine: {describe(run.machine)}. One run, {_duration(run.seconds)} in all; "
        f"goals: {'all met' if run.goals_met else 'some MISSED'}. Load average (1 / 5 / 15 min) at the "
        f"start {_load(run.load_start)}, at the end {_load(run.load_end)} (above the CPU count: other "
        f"work shared the cores). Settings: {settings}.",
        "",
        "## Summary",
        "",
        "Every figure beside the baseline measured in the same run (ratio: figure ÷ baseline); "
        "latencies where the benchmark measures them.",
        "",
        *summary_table(run),
    ]
    details = [d for s in run.sections for b in s.benchmarks if (d := _details(b))]
    if details:
        lines += ["", *details]
    for sweep in run.sweeps():
        lines += [
            "",
            f"## Load sweep: {sweep.name}",
            "",
            f"Latency: {sweep.latency}"
            + (f"; goal p99 ≤ {_ms(sweep.p99_goal_ms)}." if sweep.p99_goal_ms is not None else "."),
            "",
            *sweep_table(sweep),
        ]
    shown = [f"![{name}]({plots[name]})" for name in ("throughput", "latency") if name in plots]
    if shown:
        lines += ["", " ".join(shown)]
    stage_sets = run.stage_sets()
    if stage_sets:
        lines += [
            "",
            "## Where the time goes",
            "",
            "Per settled intent, from its timeline (`pm.intent_event`); the means of a run's stages "
            "add up to its total, the percentiles need not.",
            "",
            *stages_table(stage_sets),
        ]
        if "stages" in plots:
            lines += ["", f"![stages]({plots['stages']})"]
    lines += ["", "## Sections", ""]
    lines += [f"- **{s.name}**: {s.description}" for s in run.sections]
    return "\n".join(lines) + "\n"


# --- plots --------------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    # Imported here: matplotlib takes seconds to import, and every `pm` command imports this module.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _title(run: BenchRun, what: str) -> str:
    return f"{what}\n{run.date:%Y-%m-%d}, {run.commit}, {run.machine.cpu_count or '?'} CPUs — {FOOTNOTE}"


def plot_throughput(run: BenchRun, path: Path) -> None:
    """Achieved and accepted throughput against offered load, beside the line achieved = offered."""
    figure = _figure(8, 5)
    ax = figure.subplots()
    top = 0.0
    for sweep in run.sweeps():
        offered = [p.offered for p in sweep.points]
        achieved = [p.achieved if p.achieved is not None else float("nan") for p in sweep.points]
        accepted = [p.accepted if p.accepted is not None else float("nan") for p in sweep.points]
        ax.plot(offered, achieved, marker="o", label=f"achieved: {sweep.name}")
        ax.plot(offered, accepted, marker="x", linestyle="--", label="accepted (202)")
        for x, y in zip(offered, achieved, strict=True):
            if y == y:  # not NaN
                ax.annotate(f"{y:,.0f}", (x, y), textcoords="offset points", xytext=(0, 8), ha="center")
        top = max([top, *offered, *(y for y in achieved if y == y)])
    ax.plot([0, top * 1.05], [0, top * 1.05], color="grey", linestyle=":", label="achieved = offered")
    unit = run.sweeps()[0].unit if run.sweeps() else ""
    ax.set_xlabel(f"offered load ({unit})")
    ax.set_ylabel(f"throughput ({unit})")
    ax.set_xlim(0, top * 1.05 or 1)
    ax.set_ylim(0, top * 1.15 or 1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    ax.set_title(_title(run, "Throughput against offered load"), fontsize="medium")
    figure.savefig(path, dpi=DPI, format="png")


def plot_latency(run: BenchRun, path: Path) -> None:
    """p50, p95 and p99 against offered load, with the p99 goal."""
    figure = _figure(8, 5)
    ax = figure.subplots()
    goal: float | None = None
    for sweep in run.sweeps():
        offered = [p.offered for p in sweep.points]
        for label, values, marker in (
            ("p50", [p.p50_ms for p in sweep.points], "o"),
            ("p95", [p.p95_ms for p in sweep.points], "s"),
            ("p99", [p.p99_ms for p in sweep.points], "^"),
        ):
            ys = [v if v is not None else float("nan") for v in values]
            prefix = f"{sweep.name}: " if len(run.sweeps()) > 1 else ""
            ax.plot(offered, ys, marker=marker, label=prefix + label)
            if label == "p99":
                for x, y in zip(offered, ys, strict=True):
                    if y == y:  # not NaN
                        ax.annotate(_ms(y), (x, y), textcoords="offset points", xytext=(0, 7), ha="center")
        goal = sweep.p99_goal_ms if sweep.p99_goal_ms is not None else goal
    if goal is not None:
        ax.axhline(goal, color="red", linestyle="--", linewidth=2, label=f"goal: p99 ≤ {goal:,.0f} ms")
    sweeps = run.sweeps()
    ax.set_xlabel(f"offered load ({sweeps[0].unit if sweeps else ''})")
    ax.set_ylabel(f"latency, ms ({sweeps[0].latency if sweeps else ''})")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    ax.set_title(_title(run, "Latency percentiles against offered load"), fontsize="medium")
    figure.savefig(path, dpi=DPI, format="png")


def _groups(stage_sets: Sequence[StageSet]) -> dict[str, list[StageSet]]:
    groups: dict[str, list[StageSet]] = {}
    for stage_set in stage_sets:
        groups.setdefault(stage_set.group, []).append(stage_set)
    return groups


def plot_stages(run: BenchRun, path: Path) -> None:
    """Mean time per stage, stacked, a bar per run or intent type; one panel per group."""
    groups = _groups(run.stage_sets())
    figure = _figure(max(8.0, 3.2 * len(groups)), 6)
    axes = figure.subplots(1, max(1, len(groups)), squeeze=False)[0]
    colours: dict[str, str] = {}
    palette = [f"C{n}" for n in range(10)]
    for ax, (group, stage_sets) in zip(axes, groups.items(), strict=False):
        names = [textwrap.fill(s.name, 18) for s in stage_sets]
        bottoms = [0.0] * len(stage_sets)
        handles: dict[str, object] = {}
        stage_names = list(dict.fromkeys(stage.name for s in stage_sets for stage in s.stages))
        for stage_name in stage_names:
            colour = colours.setdefault(stage_name, palette[len(colours) % len(palette)])
            heights = [_mean_of(s.stages, stage_name) for s in stage_sets]
            bars = ax.bar(names, heights, bottom=bottoms, color=colour, label=stage_name)
            handles[stage_name] = bars
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
        for x, (total, stage_set) in enumerate(zip(bottoms, stage_sets, strict=True)):
            label = _ms(stage_set.total.mean_ms) or _ms(total)
            ax.annotate(label, (x, total), textcoords="offset points", xytext=(0, 3), ha="center", fontsize=8)
        ax.set_title(group, fontsize="small", wrap=True)
        ax.set_ylabel("mean time per settled intent (ms)")
        ax.tick_params(axis="x", labelsize=8)
        ax.set_ylim(0, max(bottoms, default=0.0) * 1.1 or 1)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.18))
    if not groups:
        axes[0].text(0.5, 0.5, "no run with stages", ha="center", va="center")
    figure.suptitle(_title(run, "Where the time goes: mean per stage"), fontsize="medium")
    figure.savefig(path, dpi=DPI, format="png")


def _mean_of(stages: Sequence[StageTimes], name: str) -> float:
    return next((s.mean_ms or 0.0 for s in stages if s.name == name), 0.0)


# --- writing ------------------------------------------------------------------------------------


def _replace(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".tmp")
    partial.write_bytes(data)
    partial.replace(path)


def write(run: BenchRun, out_dir: Path = OUT_DIR) -> dict[str, Path]:
    """Write the JSON, the markdown and the plots of `run` into `out_dir` (made if missing); what was
    written, by kind. The throughput and latency plots need a load sweep, the stages plot a run with
    stages: without, they are not drawn (nor linked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = paths(run, out_dir)
    written: dict[str, Path] = {}
    drawers = {"throughput": plot_throughput, "latency": plot_latency, "stages": plot_stages}
    wanted = {
        "throughput": bool(run.sweeps()),
        "latency": bool(run.sweeps()),
        "stages": bool(run.stage_sets()),
    }
    for name, draw in drawers.items():
        if not wanted[name]:
            continue
        partial = targets[name].with_name(targets[name].name + ".tmp")
        draw(run, partial)
        partial.replace(targets[name])
        written[name] = targets[name]
    _replace(targets["json"], encode(run))
    links = {name: path.name for name, path in written.items()}
    _replace(targets["md"], markdown(run, links).encode())
    written["json"], written["md"] = targets["json"], targets["md"]
    return written
