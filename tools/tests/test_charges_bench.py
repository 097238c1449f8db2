"""The merchant-charge benchmark, tiny: the saga's fleet as real processes, a merchant onboarded through
the admin API, charges (payment request → confirm → SETTLED) beside P2P in one run."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import charges
from pm_tools.testing.db import server_url

pytestmark = pytest.mark.slow


async def test_charges_bench_settles_every_flow_of_both_types_and_compares_them(redis_url: str) -> None:
    result = await charges.run(
        server_url(), redis_url, concurrency=4, seconds=1.0, rounds=2, warmup_s=0.3, users=20
    )

    # Two rounds of each type, alternating which goes first.
    assert len(result.p2p) == len(result.charges) == 2
    for phase in (*result.p2p, *result.charges):
        # Every flow, warm-up and drain included, made an intent that settled (the wallets are funded).
        assert phase.clean, phase.problems()
        assert phase.errors == 0 and phase.failures == {} and phase.unfinished == 0
        assert phase.settled == phase.flows > 0
        assert 0 < phase.settled_in_window <= phase.flows and phase.rate > 0
        assert phase.run.settled == phase.run.submitted > 0
        assert 0 < phase.run.p50_ms <= phase.run.p95_ms <= phase.run.p99_ms and math.isfinite(
            phase.run.p99_ms
        )
        assert sum(s.mean_ms for s in phase.run.stages) == pytest.approx(phase.run.mean_ms, rel=1e-6)
        # Both types are priced by the same rules: the fee engine ran for each.
        assert phase.run.fee_eval_us is not None and phase.run.fee_eval_us > 0
    for phase in result.charges:
        confirm = phase.from_confirm
        assert confirm is not None and confirm.settled == phase.run.settled
        # The confirmation comes after the payment request: its wait to SETTLED is shorter.
        assert 0 < confirm.p50_ms <= phase.run.p50_ms
        assert phase.run.stages[0].name == "payment request + confirm → CREATED (gateway)"
    assert all(phase.from_confirm is None for phase in result.p2p)
    assert [s.name for s in result.best_p2p.run.stages] == [
        "request → CREATED (gateway)",
        "CREATED → VALIDATED",
        "VALIDATED → AUTHORIZED",
        "AUTHORIZED → SETTLED",
    ]
    # The ratio is of the two measured figures, the best phase of each.
    assert result.best_p2p.rate == max(p.rate for p in result.p2p)
    assert result.ratio == pytest.approx(result.best_charge.rate / result.best_p2p.rate)
    # Where /proc tells, each process's CPU per flow, and the ratio it predicts.
    p2p_cpu, charge_cpu = result.best_p2p.cpu_ms, result.best_charge.cpu_ms
    if p2p_cpu:
        assert (
            {"gateway", "orchestrators", "ledger-writer", "postgres"} <= p2p_cpu.keys() == charge_cpu.keys()
        )
        assert p2p_cpu["gateway"] > 0 and charge_cpu["gateway"] > 0
        predicted = sum(p2p_cpu.values()) / sum(charge_cpu.values())
        assert result.cpu_bound_ratio == pytest.approx(predicted)

    console = Console(record=True, width=300)
    met = charges.report(result, console)
    text = console.export_text()
    assert "MINIAPP_CHARGE" in text and "charges/s ÷ P2P/s" in text and f"{result.ratio:.1%}" in text
    assert "where the time goes" in text and "payment request + confirm" in text
    assert met == charges.goals_met(result) == (result.ratio >= charges.GOAL)

    # The figures for `pm bench`'s report: P2P, then charges beside it with the goal.
    section = charges.section(result)
    p2p_row, charge_row = section.benchmarks
    assert (p2p_row.throughput, charge_row.throughput) == (result.best_p2p.rate, result.best_charge.rate)
    assert charge_row.baseline == result.best_p2p.rate and charge_row.ratio == result.ratio
    assert charge_row.goal == "≥ 80% of P2P" and charge_row.goal_met == met == section.goals_met
    assert charge_row.extra["confirm → SETTLED p50 ms"] > 0
    assert [s.name for s in section.stages] == ["P2P", "MINIAPP_CHARGE"]
