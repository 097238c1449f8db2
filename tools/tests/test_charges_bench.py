"""The merchant-charge benchmark, tiny: the saga's fleet as real processes, a merchant onboarded through
the admin API, charges (confirm of a payment request made beforehand → SETTLED, and with the request
inside the flow) beside P2P in one run; and a phase that runs out of payment requests says so."""

from __future__ import annotations

import math

import pytest
from rich.console import Console

from pm_tools.bench import charges, flows
from pm_tools.testing.db import server_url

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("bench_streams_read_briefly")]


def check_clean(phase: flows.Phase) -> None:
    """Every flow, warm-up and drain included, made an intent that settled (the wallets are funded)."""
    assert phase.clean, phase.problems()
    assert phase.errors == 0 and phase.failures == {} and phase.unfinished == 0 and phase.exhausted is None
    assert phase.settled == phase.flows > 0
    assert 0 < phase.settled_in_window <= phase.flows and phase.rate > 0
    assert phase.run.settled == phase.run.submitted > 0
    assert 0 < phase.run.p50_ms <= phase.run.p95_ms <= phase.run.p99_ms and math.isfinite(phase.run.p99_ms)
    assert sum(s.mean_ms for s in phase.run.stages) == pytest.approx(phase.run.mean_ms, rel=1e-6)
    # Every type is priced by the same rules: the fee engine ran for each.
    assert phase.run.fee_eval_us is not None and phase.run.fee_eval_us > 0


async def test_charges_bench_settles_every_flow_of_each_kind_and_compares_them(redis_url: str) -> None:
    # Half-second windows: four workers settle a few dozen flows of each kind in each.
    result = await charges.run(
        server_url(), redis_url, concurrency=4, seconds=0.5, rounds=2, warmup_s=0.2, users=20
    )

    # Two rounds of each kind.
    assert len(result.p2p) == len(result.charges) == len(result.full) == 2
    for phase in result.phases:
        check_clean(phase)
    assert result.pool == charges.pool_size(4, 0.2, 0.5)
    for phase in result.charges:
        # Timed from the confirmation: the payment requests were made before the phase, one per flow.
        assert phase.run.stages[0].name == "confirm → CREATED (gateway)"
        assert phase.from_intake is None and phase.flows <= result.pool
    for phase in result.full:
        confirm = phase.from_intake
        assert confirm is not None and confirm.settled == phase.run.settled
        # The same flows, each timed from its confirmation, which comes after its payment request.
        assert 0 < confirm.p50_ms <= phase.run.p50_ms and confirm.p99_ms <= phase.run.p99_ms
        assert phase.run.stages[0].name == "payment request + confirm → CREATED (gateway)"
    assert all(phase.from_intake is None and phase.first_request is None for phase in result.p2p)
    assert [s.name for s in result.best_p2p.run.stages] == [
        "request → CREATED (gateway)",
        "CREATED → VALIDATED",
        "VALIDATED → AUTHORIZED",
        "AUTHORIZED → SETTLED",
    ]
    # The ratios are of the measured figures, the best phase of each kind.
    assert result.best_p2p.rate == max(p.rate for p in result.p2p)
    assert result.ratio == pytest.approx(result.best_charge.rate / result.best_p2p.rate)
    assert result.full_ratio == pytest.approx(result.best_full.rate / result.best_p2p.rate)
    # Where /proc tells, each process's CPU per flow, and the ratio it predicts.
    p2p_cpu, charge_cpu = result.best_p2p.cpu_ms, result.best_charge.cpu_ms
    if p2p_cpu:
        assert (
            {"gateway", "orchestrators", "ledger-writer", "postgres"} <= p2p_cpu.keys() == charge_cpu.keys()
        )
        assert p2p_cpu["gateway"] > 0 and charge_cpu["gateway"] > 0
        predicted = sum(p2p_cpu.values()) / sum(charge_cpu.values())
        assert result.cpu_bound_ratio == pytest.approx(predicted)

    console = Console(record=True, width=320)
    met = charges.report(result, console)
    text = console.export_text()
    assert "MINIAPP_CHARGE (confirm)" in text and "MINIAPP_CHARGE (request + confirm)" in text
    assert (
        "charges/s ÷ P2P/s" in text and f"{result.ratio:.1%}" in text and f"{result.full_ratio:.1%}" in text
    )
    assert "where the time goes" in text and "payment request + confirm" in text
    assert met == charges.goals_met(result) == (result.ratio >= charges.GOAL)

    # The figures for `pm bench`'s report: P2P, charges beside it with the goal, then with requests.
    section = charges.section(result)
    p2p_row, charge_row, full_row = section.benchmarks
    assert (p2p_row.throughput, charge_row.throughput, full_row.throughput) == (
        result.best_p2p.rate,
        result.best_charge.rate,
        result.best_full.rate,
    )
    assert charge_row.baseline == full_row.baseline == result.best_p2p.rate
    assert (charge_row.ratio, full_row.ratio) == (result.ratio, result.full_ratio)
    assert charge_row.goal == "≥ 80% of P2P" and charge_row.goal_met == met == section.goals_met
    assert "confirm → SETTLED" in charge_row.name and charge_row.note is None
    assert full_row.goal is None and full_row.goal_met is None  # informational
    assert full_row.extra["confirm → SETTLED p50 ms"] > 0
    assert [s.name for s in section.stages] == [
        "P2P",
        "MINIAPP_CHARGE (confirm)",
        "MINIAPP_CHARGE (request + confirm)",
    ]


async def test_a_phase_that_runs_out_of_payment_requests_is_not_clean_and_says_so(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Assume a flow takes 100 s: two workers get 2 × (1 + 1) payment requests for the phase, which
    # they confirm in a fraction of its 0.7 s.
    monkeypatch.setattr(charges, "MIN_FLOW_S", 100.0)
    result = await charges.run(
        server_url(), redis_url, concurrency=2, seconds=0.5, rounds=1, warmup_s=0.2, users=10
    )

    assert result.pool == 4
    (ran_out,) = result.charges
    # The four requests were confirmed (each once) and settled; then each worker stopped, loudly.
    assert ran_out.flows == ran_out.settled == 4 and ran_out.errors == 0
    assert ran_out.exhausted is not None and "all 4 OPEN payment requests" in ran_out.exhausted
    assert not ran_out.clean and "RAN OUT OF WORK" in ran_out.problems()
    check_clean(result.p2p[0])
    check_clean(result.full[0])
    assert not result.clean and not charges.goals_met(result)

    console = Console(record=True, width=400)
    assert charges.report(result, console) is False
    assert "RAN OUT OF WORK" in console.export_text()
    charge_row = charges.section(result).benchmarks[1]
    assert charge_row.goal_met is False
    assert charge_row.note is not None and "RAN OUT OF WORK" in charge_row.note
