"""`pm bench`'s report, from a run made up by hand: the JSON reads back equal, the markdown has every
row, the three plots are real PNGs, and the files are named after the day and the commit."""

from __future__ import annotations

import math
import os
import struct
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import matplotlib.colors
import matplotlib.image
import msgspec
import numpy as np
import pytest
import typer

from pm_shared import db
from pm_tools.bench import model, report
from pm_tools.bench.model import (
    Benchmark,
    BenchRun,
    LoadPoint,
    LoadSweep,
    Machine,
    Section,
    StageSet,
    StageTimes,
)
from pm_tools.cli.bench_cmd import parse_rates
from pm_tools.testing.db import server_url

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
DATE = datetime(2026, 11, 24, 21, 30, 5, tzinfo=UTC)


def _stage(name: str, mean: float) -> StageTimes:
    return StageTimes(name=name, p50_ms=mean * 0.9, p95_ms=mean * 1.5, p99_ms=mean * 2, mean_ms=mean)


def _stage_set(group: str, name: str, means: dict[str, float]) -> StageSet:
    total = sum(means.values())
    return StageSet(
        group=group,
        name=name,
        stages=[_stage(stage, mean) for stage, mean in means.items()],
        total=_stage("total", total),
    )


def _streams_section() -> Section:
    """The streams runtime: one goal met, one missed."""
    return Section(
        name="streams runtime",
        description="The streams runtime beside raw redis-py.",
        benchmarks=[
            Benchmark(
                name="consumer, no-op batch handler",
                unit="msg/s",
                throughput=183_229.0,
                baseline_name="raw redis-py: batched XREADGROUP",
                baseline=189_226.0,
                ratio=183_229.0 / 189_226.0,
                goal="≥ 70% of raw",
                goal_met=True,
            ),
            Benchmark(
                name="publisher, one awaited XADD per message",
                unit="msg/s",
                throughput=5_000.0,
                baseline_name="raw redis-py: one XADD",
                baseline=9_707.0,
                ratio=5_000.0 / 9_707.0,
                goal="≥ 70% of raw",
                goal_met=False,
            ),
        ],
        goals_met=False,
    )


def _saga_benchmarks() -> list[Benchmark]:
    """The pipeline run (a goal met, a note, an extra figure) and an HTTP run (a goal not held)."""
    return [
        Benchmark(
            name="saga, pipeline: 20,000 IntentSubmitted straight onto pm:intents",
            unit="settled/s",
            throughput=1_232.0,
            p50_ms=7_182.0,
            p95_ms=9_286.0,
            p99_ms=9_684.0,
            goal="≥ 1,000/s",
            goal_met=True,
            note="latency: mostly the wait behind the intents queued ahead",
            extra={"fee engine µs per intent": 144.0},
        ),
        Benchmark(
            name="saga, HTTP at 400/s offered",
            unit="settled/s",
            throughput=380.0,
            p50_ms=300.0,
            p95_ms=700.0,
            p99_ms=900.0,
            baseline_name="offered load",
            baseline=400.0,
            ratio=0.95,
            goal="p99 ≤ 250 ms (at ≤ 300/s only)",
            goal_met=None,
        ),
    ]


def _saga_stages() -> list[StageSet]:
    """The stages of the pipeline run and of three HTTP runs."""
    http_means = {
        100: {"request → CREATED (gateway)": 9.0, "CREATED → VALIDATED": 12.0, "VALIDATED → SETTLED": 20.0},
        200: {"request → CREATED (gateway)": 11.0, "CREATED → VALIDATED": 15.0, "VALIDATED → SETTLED": 25.0},
        300: {"request → CREATED (gateway)": 15.0, "CREATED → VALIDATED": 28.0, "VALIDATED → SETTLED": 40.0},
    }
    return [
        _stage_set(
            "pipeline runs",
            "saga pipeline (P2P)",
            {
                "published → VALIDATED": 5_000.0,
                "VALIDATED → AUTHORIZED": 900.0,
                "AUTHORIZED → SETTLED": 700.0,
            },
        ),
        *(_stage_set("HTTP runs", f"HTTP {rate}/s", means) for rate, means in http_means.items()),
    ]


def _saga_sweep() -> LoadSweep:
    """Three offered rates; the last with refusals and an error, and past the p99 goal."""
    return LoadSweep(
        name="saga: signed POST /v1/intents",
        unit="intents/s",
        latency="request sent → SETTLED",
        points=[
            LoadPoint(offered=99.99999, accepted=100.0, achieved=98.5, p50_ms=41.0, p95_ms=60.0, p99_ms=75.0),
            LoadPoint(offered=200.0, accepted=200.0, achieved=195.0, p50_ms=51.0, p95_ms=90.0, p99_ms=130.0),
            LoadPoint(
                offered=300.0,
                accepted=290.0,
                achieved=281.0,
                p50_ms=83.0,
                p95_ms=180.0,
                p99_ms=262.5,
                rejected=30,
                errors=1,
            ),
        ],
        p99_goal_ms=250.0,
    )


def fabricated_run() -> BenchRun:
    """Made-up figures: every kind of row the report has."""
    saga = Section(
        name="saga",
        description="The whole fleet.",
        benchmarks=_saga_benchmarks(),
        stages=_saga_stages(),
        sweeps=[_saga_sweep()],
        goals_met=False,
    )
    return BenchRun(
        date=DATE,
        commit="abc1234-dirty",
        machine=Machine(
            cpu_count=2,
            cpu_model="Made-up CPU @ 2.00GHz",
            memory_bytes=8 * 2**30,
            system="Linux 6.1 x86_64",
            python="3.11.7",
            redis="7.0.15",
            postgresql="16.4",
        ),
        settings={"messages": 40_000, "rates": "100,200,300", "quick": False},
        seconds=312.0,
        sections=[_streams_section(), saga],
        load_start=[2.99, 3.43, 2.65],
        load_end=[5.25, 4.7, 3.375],
    )


def _png_size(path: Path) -> tuple[int, int]:
    """(width, height) from the PNG's IHDR chunk; fails on anything that is not a PNG."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path.name} is not a PNG"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path.name} is truncated"
    return width, height


def _pixels(path: Path, colour: str) -> int:
    """How many pixels of the PNG at `path` are `colour` (#rrggbb), give or take antialiasing."""
    image = matplotlib.image.imread(path)
    target = np.array(matplotlib.colors.to_rgb(colour))
    return int((np.abs(image[:, :, :3] - target).max(axis=2) < 0.02).sum())


def test_the_report_round_trips_its_json_has_every_row_and_draws_three_pngs(tmp_path: Path) -> None:
    run = fabricated_run()

    written = report.write(run, tmp_path / "results")

    stem = "2026-11-24-abc1234-dirty"
    assert {kind: path.name for kind, path in written.items()} == {
        "json": f"{stem}.json",
        "md": f"{stem}.md",
        "throughput": f"{stem}-throughput.png",
        "latency": f"{stem}-latency.png",
        "stages": f"{stem}-stages.png",
    }
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == sorted(
        p.name for p in written.values()
    )

    # The JSON reads back as the same run, field for field.
    again = model.decode(written["json"].read_bytes())
    assert again == run
    assert again.date == DATE and again.sections[1].sweeps[0].points[2].p99_ms == 262.5
    assert msgspec.json.decode(written["json"].read_bytes())["schema"] == model.SCHEMA

    md = written["md"].read_text()
    assert md.startswith("# `pm bench`, 2026-11-24 21:30 UTC, commit abc1234-dirty\n")
    assert "2 × Made-up CPU @ 2.00GHz (2 CPUs), 8.0 GiB memory" in md
    assert "Redis 7.0.15; PostgreSQL 16.4" in md and "5 min 12 s" in md and "some MISSED" in md
    assert "at the start 2.99 / 3.43 / 2.65, at the end 5.25 / 4.70 / 3.38" in md
    # The summary: a row per benchmark, beside its baseline, with the ratio and the verdict.
    assert (
        "| consumer, no-op batch handler | 183,229 msg/s | 189,226 msg/s (raw redis-py: batched XREADGROUP) "
        "| 96.8 % |  |  |  | ≥ 70% of raw: met |"
    ) in md
    assert "| 5,000 msg/s | 9,707 msg/s (raw redis-py: one XADD) | 51.5 % |" in md
    assert "≥ 70% of raw: MISSED |" in md
    assert "| 1,232 settled/s |  |  | 7,182 ms | 9,286 ms | 9,684 ms | ≥ 1,000/s: met |" in md
    assert "p99 ≤ 250 ms (at ≤ 300/s only): not held |" in md
    assert "| **streams runtime** |" in md and "| **saga** |" in md
    assert "fee engine µs per intent 144" in md
    # The load sweep: a row per offered rate.
    assert "| 99.99 |" not in md and "| 100.0 |" not in md
    assert "| 100 | 100 | 98.5 | 98.5 % | 41 ms | 60 ms | 75 ms | 0 | 0 |" in md
    assert "| 300 | 290 | 281 | 93.7 % | 83 ms | 180 ms | 262 ms | 30 | 1 |" in md
    # The stages: each stage of each run, and its total.
    assert "| HTTP 300/s | CREATED → VALIDATED | 25 ms | 42 ms | 56 ms | 28 ms |" in md
    assert "| saga pipeline (P2P) | **total** | 5,940 ms | 9,900 ms | 13,200 ms | 6,600 ms |" in md
    assert "| HTTP 100/s | request → CREATED (gateway) | 8.1 ms | 14 ms | 18 ms | 9.0 ms |" in md
    # The plots, linked by their file names (the markdown sits beside them).
    for kind in ("throughput", "latency", "stages"):
        assert f"]({stem}-{kind}.png)" in md

    sizes = {}
    for kind in ("throughput", "latency", "stages"):
        path = written[kind]
        width, height = _png_size(path)
        assert width >= 600 and height >= 400, (kind, width, height)
        assert path.stat().st_size > 30_000, (kind, path.stat().st_size)  # empty axes and a title: 26 kB
        sizes[kind] = path.read_bytes()
    assert len(set(sizes.values())) == 3  # three different pictures
    # What is drawn, by its colours: the achieved and accepted lines; p50, p99 and the red goal line;
    # the stacked bars (large areas of the first stages' colours, one colour per stage name).
    assert _pixels(written["throughput"], "#1f77b4") > 300 and _pixels(written["throughput"], "#ff7f0e") > 300
    assert _pixels(written["latency"], "#1f77b4") > 300 and _pixels(written["latency"], "#2ca02c") > 300
    assert _pixels(written["latency"], "#ff0000") > 300
    assert all(_pixels(written["stages"], colour) > 5_000 for colour in ("#1f77b4", "#ff7f0e", "#d62728"))
    assert not list((tmp_path / "results").glob("*.tmp"))


def test_a_run_without_sweep_or_stages_writes_no_empty_plots(tmp_path: Path) -> None:
    run = fabricated_run()
    run.sections = run.sections[:1]  # the streams runtime alone

    written = report.write(run, tmp_path)

    assert set(written) == {"json", "md"}
    md = written["md"].read_text()
    assert ".png" not in md and "Load sweep" not in md and "Where the time goes" not in md
    assert model.decode(written["json"].read_bytes()) == run


def test_the_file_names_carry_the_date_and_the_commit(tmp_path: Path) -> None:
    assert report.stem(datetime(2027, 1, 2, 23, 59, tzinfo=UTC), "0a1b2c3") == "2027-01-02-0a1b2c3"
    run = fabricated_run()
    run.date, run.commit = datetime(2027, 3, 4, 5, 6, tzinfo=UTC), "feedbee"
    assert {kind: p.name for kind, p in report.paths(run, tmp_path).items()} == {
        "json": "2027-03-04-feedbee.json",
        "md": "2027-03-04-feedbee.md",
        "throughput": "2027-03-04-feedbee-throughput.png",
        "latency": "2027-03-04-feedbee-latency.png",
        "stages": "2027-03-04-feedbee-stages.png",
    }
    assert report.stem(DATE, "a/b c") == "2026-11-24-a_b_c"  # never a path of its own


def _git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_GLOBAL": os.devnull,
    }
    done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_the_commit_is_the_short_head_dirty_when_tracked_files_changed(tmp_path: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("one\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "one")
    head = _git(repo, "rev-parse", "--short", "HEAD")

    assert report.commit_label(repo) == head
    (repo / "results.json").write_text("{}")  # untracked: earlier results do not make it dirty
    assert report.commit_label(repo) == head
    (repo / "a.txt").write_text("two\n")
    assert report.commit_label(repo) == f"{head}-dirty"
    assert report.commit_label(outside) == "unknown"


def test_machine_facts_come_from_proc(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R)   CPU @ 2.20GHz\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\n"
    )
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24576000 kB\nMemFree:         1000 kB\n")

    assert report.cpu_model(cpuinfo) == "Intel(R) Xeon(R) CPU @ 2.20GHz"
    assert report.memory_bytes(meminfo) == 24_576_000 * 1024


def test_figures_that_could_not_be_measured_are_left_out_not_nan() -> None:
    assert model.finite(float("nan")) is None and model.finite(math.inf) is None
    assert model.finite(1.5) == 1.5
    assert model.known({"a": 1.0, "b": float("nan"), "c": None, "d": 0.0}) == {"a": 1.0, "d": 0.0}


def test_rates_parse_from_a_comma_separated_list() -> None:
    assert parse_rates("100,200, 300") == [100.0, 200.0, 300.0]
    for bad in ("", "100,x", "0,100"):
        with pytest.raises(typer.BadParameter):
            parse_rates(bad)


async def test_the_postgresql_version_is_read_even_where_pm_has_no_database_yet() -> None:
    missing = db.with_database(server_url(), "pm_bench_no_such_database")
    version = await report.postgresql_version(missing)

    assert version is not None and version.split(".")[0].isdigit()
