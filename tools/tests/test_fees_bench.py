"""`pm bench --fees`' parts: the rule set is every seeded rule, the intents are new payments each, and
the section holds the figure to its goal (the timing itself is `pm bench`'s, never asserted here)."""

from __future__ import annotations

from pm_tools.bench import fees, workload
from pm_tools.chaos import load
from pm_tools.demo import plan


def test_the_rule_set_is_every_rule_the_project_seeds() -> None:
    ids = {rule.rule_id for rule in fees.stored_rules()}
    seeded = {r.rule_id for r in [*plan.fee_rules(), *load.plan(seed=1, count=20, run_id="bench").fee_rules]}

    assert ids == seeded | {rule.rule_id for rule in workload.fee_rules()}
    assert all(rule.version == 1 and rule.active_from.tzinfo is not None for rule in fees.stored_rules())


def test_the_intents_are_payments_between_demo_wallets_each_drawn_anew() -> None:
    made = fees.intents(500)

    assert all(i.type == "P2P" and i.source_id and i.source_id.startswith(plan.DEMO_PREFIX) for i in made)
    assert all(i.source_id != i.target_id for i in made)
    assert len({(i.source_id, i.target_id, i.amount) for i in made}) > 490
    assert any(i.amount >= plan.POST_FROM for i in made) and any(i.amount < plan.POST_FROM for i in made)


def test_a_small_run_prices_alike_and_is_held_to_the_goal() -> None:
    result = fees.run(count=200, baseline_count=50, rounds=1)

    assert (result.rules, result.rules_met, result.intents) == (len(fees.stored_rules()), 6, 200)
    assert result.us > 0 and result.baseline_us > 0 and result.fees_per_intent >= 2
    section = fees.section(result)
    (priced,) = section.benchmarks
    assert priced.goal_met == (result.us <= fees.GOAL_US) == section.goals_met
    assert priced.extra["µs per intent"] == result.us


def test_the_goal_is_missed_above_twenty_microseconds() -> None:
    slow = fees.FeesResult(9, 6, 100, 10, us=20.5, baseline_us=300.0, compile_ms=1.0, fees_per_intent=3.0)
    fast = fees.FeesResult(9, 6, 100, 10, us=19.5, baseline_us=300.0, compile_ms=1.0, fees_per_intent=3.0)

    assert fees.section(slow).goals_met is False and fees.section(fast).goals_met is True
