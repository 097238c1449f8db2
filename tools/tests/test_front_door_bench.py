"""The front-door benchmark, tiny: a real nginx with auth_request to the Auth Center sandbox in front
of the gateway, beside the same requests straight to the gateway; and, without nginx, a skip that is
no failure."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest
from rich.console import Console

from pm_tools import frontdoor
from pm_tools.bench import front_door, model, report
from pm_tools.testing.db import server_url


@pytest.mark.slow
@pytest.mark.skipif(frontdoor.installed() is None, reason=f"no nginx: {frontdoor.INSTALL_HINT}")
@pytest.mark.usefixtures("bench_streams_read_briefly")
async def test_front_door_bench_measures_each_route_both_ways(redis_url: str) -> None:
    # Six phases (three routes, both ways) of 0.1 s warm-up and a 0.3 s window: two workers still make
    # dozens of requests in each.
    result = await front_door.run(
        server_url(), redis_url, concurrency=2, seconds=0.3, rounds=1, warmup_s=0.1, users=10
    )

    assert result.skipped is None and result.nginx
    assert [found.route.key for found in result.routes] == ["wallets", "confirm", "signed"]
    for found in result.routes:
        for side in (*found.direct, *found.nginx):
            # Every request got its expected answer (200, or 202 for a confirmation).
            assert side.clean and side.errors == 0 and not side.exhausted, side.first_error
            assert side.requests > 0 and side.rate > 0
            assert 0 < side.p50_ms <= side.p99_ms and math.isfinite(side.p99_ms)
        # The ratio is of the two measured figures.
        assert found.ratio == pytest.approx(found.best_nginx.rate / found.best_direct.rate)
        direct_cpu, nginx_cpu = found.best_direct.cpu_ms, found.best_nginx.cpu_ms
        if direct_cpu:  # where /proc tells: each member's CPU per request, and the ratio it predicts
            assert set(front_door.MEMBERS) == direct_cpu.keys() == nginx_cpu.keys()
            predicted = sum(direct_cpu.values()) / sum(nginx_cpu.values())
            assert found.cpu_bound_ratio == pytest.approx(predicted)

    console = Console(record=True, width=300)
    met = front_door.report(result, console)
    text = console.export_text()
    assert "GET /v1/me/wallets" in text and "nginx ÷ direct" in text and "SKIPPED" not in text
    assert met == front_door.goals_met(result) == all(f.ratio >= front_door.GOAL for f in result.routes)

    section = front_door.section(result)
    assert [b.throughput for b in section.benchmarks] == [f.best_nginx.rate for f in result.routes]
    assert [b.baseline for b in section.benchmarks] == [f.best_direct.rate for f in result.routes]
    assert all(b.goal == "≥ 80% of direct" and b.skipped is None for b in section.benchmarks)
    assert section.goals_met == met


async def test_without_nginx_the_rows_are_skipped_not_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(frontdoor, "installed", lambda: None)
    # Nothing is started: the servers named here are never reached.
    result = await front_door.run("postgresql://nowhere/pm", "redis://nowhere:1/0")

    assert result.routes == [] and result.skipped is not None and "nginx" in result.skipped
    assert front_door.goals_met(result) is None
    console = Console(record=True, width=300)
    assert front_door.report(result, console) is None
    shown = console.export_text()
    assert "SKIPPED" in shown and "not a failure" in shown

    section = front_door.section(result)
    assert section.goals_met is None and len(section.benchmarks) == len(front_door.ROUTES)
    assert all(b.skipped and b.throughput is None and b.goal_met is None for b in section.benchmarks)
    machine = model.Machine(
        cpu_count=2,
        cpu_model="x",
        memory_bytes=None,
        system="Linux",
        python="3.11",
        redis=None,
        postgresql=None,
    )
    run = model.BenchRun(
        date=datetime(2026, 11, 25, tzinfo=UTC),
        commit="abc1234",
        machine=machine,
        settings={},
        seconds=1.0,
        sections=[section],
    )
    # A skipped section does not make the run miss its goals; the markdown marks each row.
    assert run.goals_met
    text = report.markdown(run)
    assert "goals: all met" in text and text.count("≥ 80% of direct: skipped") == len(front_door.ROUTES)
    assert "SKIPPED (not a failure): nginx is not installed" in text
    assert model.decode(model.encode(run)) == run
