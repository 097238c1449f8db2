"""The saga benchmark end to end, tiny: the whole fleet as real processes, a throw-away database."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import saga
from pm_tools.testing.db import server_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("bench_streams_read_briefly")]


async def test_saga_bench_settles_every_intent_and_accounts_for_the_time(redis_url: str) -> None:
    result = await saga.run(
        server_url(),
        redis_url,
        intents=300,
        rates=[30, 50],
        seconds=1,
        orchestrators=2,
        users=50,
        warmup_s=0.3,
    )

    pipeline, http = result.pipeline, result.http
    # A load sweep: one HTTP run per offered rate, in order; `http` is the last (none is at 300/s).
    assert len(result.http_runs) == 2 and result.http_runs[1] is http
    assert [r.offered_rate for r in result.http_runs] == [
        pytest.approx(30, rel=0.01),
        pytest.approx(50, rel=0.01),
    ]
    assert result.http_runs[0].submitted == 30
    for run in (pipeline, *result.http_runs):
        # Every intent that went in settled (the wallets are funded for all of them), none twice.
        assert run.failures == {} and run.unfinished == 0 and run.errors == 0, run
        assert run.unfinished_states == {} and run.stall is None
        assert run.settled == run.submitted > 0
        assert run.seconds > 0 and run.settled_rate > 0
        assert 0 < run.p50_ms <= run.p95_ms <= run.p99_ms and math.isfinite(run.p99_ms)
        # The stages are consecutive spans of the same timeline: their means add up to the total.
        assert run.stages and all(s.mean_ms >= 0 for s in run.stages)
        assert sum(s.mean_ms for s in run.stages) == pytest.approx(run.mean_ms, rel=1e-6)
        # One PRE and one POST rule price every payment: the fee engine ran, and was timed.
        assert run.fee_eval_us is not None and run.fee_eval_us > 0
        assert run.resumed == 0
    assert pipeline.submitted == 300
    assert [s.name for s in pipeline.stages] == [
        "published → VALIDATED",
        "VALIDATED → AUTHORIZED",
        "AUTHORIZED → SETTLED",
    ]
    assert http.stages[0].name == "request → CREATED (gateway)" and len(http.stages) == 4
    # Open-loop at 50/s for 1 s after 0.3 s of warm-up: 50 requests measured, all accepted (far
    # below back-pressure).
    assert http.submitted == 50 and http.rejected_503 == 0 and http.warmup_s == 0.3
    assert http.offered_rate == pytest.approx(50, rel=0.01)
    assert http.accepted_rate == pytest.approx(50, rel=0.01)
    assert http.answer_p50_ms is not None and http.answer_p50_ms > 0
    assert http.intake_mean_ms is not None and http.intake_mean_ms > 0

    console = Console(record=True, width=300)
    met = saga.report(result, console)
    text = console.export_text()
    assert "pipeline (XADD to pm:intents)" in text and "HTTP (signed POST /v1/intents)" in text
    assert f"{pipeline.settled_rate:,.0f}" in text and f"{http.p99_ms:,.0f} ms" in text
    assert "where the time goes" in text and "AUTHORIZED → SETTLED" in text
    assert met == saga.goals_met(result)
    assert "HTTP 30/s" in text and "HTTP 50/s" in text

    # The figures for `pm bench`'s report: the pipeline and each HTTP run, the sweep, the stages.
    section = saga.section(result)
    assert [b.throughput for b in section.benchmarks] == [
        r.settled_rate for r in (pipeline, *result.http_runs)
    ]
    assert section.benchmarks[2].baseline == http.offered_rate and section.benchmarks[2].p99_ms == http.p99_ms
    (sweep,) = section.sweeps
    assert [(p.offered, p.achieved, p.p99_ms) for p in sweep.points] == [
        (r.offered_rate, r.settled_rate, r.p99_ms) for r in result.http_runs
    ]
    assert [s.name for s in section.stages] == ["saga pipeline (P2P)", "HTTP 30/s", "HTTP 50/s"]
    assert section.stages[2].total.mean_ms == pytest.approx(http.mean_ms)
    assert section.goals_met == met
