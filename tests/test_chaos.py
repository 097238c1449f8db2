"""A short seeded chaos run (the long one is `make chaos`): the whole fleet on private Redis and
PostgreSQL servers of its own, every intent type through the gateway — a merchant's credits and its
users' confirmed charges, exchanges THB <-> USD over two ledgers among them — while processes are
SIGKILLed and restarted, Redis and PostgreSQL restart and the PSP sandboxes inject faults; then every
invariant (docs/invariants.md) must hold, per ledger, and the report's counts must add up.
"""

from __future__ import annotations

import shutil
import sys

import pytest

from pm_client.api import TERMINAL_STATES
from pm_tools.chaos import ChaosOptions, run_chaos
from pm_tools.chaos.schedule import schedule

pytestmark = pytest.mark.slow

SEED = 11
INTENTS = 200
KILLS = 3


@pytest.mark.timeout(150)
async def test_a_short_seeded_chaos_run_keeps_every_invariant() -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: the chaos run starts a private Redis")
    lines: list[str] = []
    report = await run_chaos(
        ChaosOptions(
            seed=SEED, intents=INTENTS, kills=KILLS, rate=20.0, quiesce_timeout_s=45.0, progress=lines.append
        )
    )
    print("\n".join(lines), file=sys.stderr)

    assert report.ok, (report.problems(), report.actions, report.crashes)
    # Every planned intent was accepted exactly once (same Idempotency-Key on every resend), each is
    # in the database once, and each ended SETTLED or FAILED.
    assert report.accepted == report.planned == INTENTS
    assert report.intents_in_db == INTENTS
    assert sum(report.by_state.values()) == INTENTS
    assert {state for _, state, _ in report.by_state} <= TERMINAL_STATES
    assert {type_ for type_, _, _ in report.by_state} == {
        "ADJUSTMENT",
        "P2P",
        "PROMPTPAY_WITHDRAWAL",
        "SBP_TOPUP",
        "MINIAPP_CREDIT",
        "MINIAPP_CHARGE",
        "FX_EXCHANGE",
    }
    assert all(code for _, state, code in report.by_state if state == "FAILED")
    # The merchant's traffic settled (its credits, its users' confirmed charges with its commission),
    # and the money checks covered its account: never below zero, exactly what its intents moved, its
    # intents' legs between its account and the wallets.
    assert report.by_state[("MINIAPP_CREDIT", "SETTLED", "")] > 0
    assert report.by_state[("MINIAPP_CHARGE", "SETTLED", "")] > 0
    assert report.accounts_checked["merchant"] == 1 and report.accounts_checked["user"] > 0
    assert report.accounts_checked["liquidity"] == 2  # THB and USD
    # Exchanges settled both ways on two ledgers, and the one beyond the USD liquidity failed whole:
    # the checks held each one's legs on both ledgers, the liquidity accounts never below zero and as
    # the exchanges moved them, and the users' wallets in each currency.
    assert report.by_state[("FX_EXCHANGE", "SETTLED", "")] > 0
    assert report.by_state[("FX_EXCHANGE", "FAILED", "LIQUIDITY_INSUFFICIENT")] >= 1
    assert {
        "per ledger debits = credits",
        "no wallet, merchant or liquidity account below zero",
        "wallets, merchant and liquidity accounts = what settled intents moved",
        "SETTLED has exactly its posted legs",
        "FAILED has none posted, none pending",
        "the reconciler finds nothing wrong",
    } <= set(report.invariants)
    # The chaos happened as scheduled: every kill restarted, one Redis and one PostgreSQL restart.
    assert sum(report.kills.values()) == KILLS
    assert (report.redis_restarts, report.postgres_restarts) == (1, 1)
    assert len(report.actions) == len(schedule(SEED, KILLS))
    # Every DLQ record is explained (the invariant), so the explained ones are all of them.
    assert len(report.dlq_explained) == sum(report.dlq.values())
    assert report.longest_to_terminal_s is not None and report.longest_to_terminal_s < 60
    assert set(report.to_json()) >= {
        "byState",
        "dlqMoves",
        "reclaimsTotal",
        "backpressureRefusals",
        "invariants",
    }
