"""`pm bench --fees`: microseconds to price one intent with the fee engine, beside the cel-python engine
it replaced (`pm_shared.fees.reference`) in the same run.

The rule set is every rule the project seeds: the demo's, a chaos run's and `pm bench`'s saga rules,
all in force at once, so a P2P intent meets six rules (four with a condition). The intents are P2P
payments between demo wallets, each pair and amount drawn anew, so the engine converts new ids and
amounts for each one as it would in service. Both engines must agree on every fee.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.table import Table

from pm_client import api
from pm_shared.fees import FeeEngine, FeeInput, FeeRule
from pm_shared.fees.reference import ReferenceEngine
from pm_tools.bench import model, workload
from pm_tools.chaos import load
from pm_tools.demo import plan

GOAL_US = 20.0
INTENTS = 20_000
BASELINE_INTENTS = 2_000  # cel-python takes a few hundred µs each
USERS = 10_000


def _stored(rule: api.FeeRuleIn, since: datetime) -> FeeRule:
    return FeeRule(
        rule_id=rule.rule_id,
        version=1,
        operation_type=rule.operation_type,
        condition=rule.condition,
        amount=rule.amount,
        timing=rule.timing,
        payer=rule.payer,
        fee_account_code=rule.fee_account_code,
        priority=rule.priority,
        max_fee=rule.max_fee,
        active_from=rule.active_from or since,
        active_until=rule.active_until,
        description=rule.description,
    )


def stored_rules() -> list[FeeRule]:
    """Every fee rule the project seeds: the demo's, one chaos run's and `pm bench`'s saga rules."""
    since = datetime(2025, 1, 1, tzinfo=UTC)
    seeded = [*plan.fee_rules(), *load.plan(seed=1, count=20, run_id="bench").fee_rules]
    bench = [dataclasses.replace(rule, version=1, active_from=since) for rule in workload.fee_rules()]
    return [*(_stored(rule, since) for rule in seeded), *bench]


def intents(count: int, seed: int = 1) -> list[FeeInput]:
    """P2P payments between demo wallets, amounts from 1.00 to 5,000.00 (a third above 1,000.00)."""
    rng = random.Random(seed)
    users = [f"{plan.DEMO_PREFIX}u{n:05d}" for n in range(USERS)]
    made = []
    for _ in range(count):
        payer, payee = rng.sample(users, 2)
        amount = rng.randint(100, 100_000) if rng.random() < 0.67 else rng.randint(100_000, 500_000)
        made.append(FeeInput("P2P", amount, "THB", "user", payer, "user", payee))
    return made


def _price_all(engine: FeeEngine | ReferenceEngine, given: Sequence[FeeInput], at: datetime) -> float:
    """CPU seconds (this thread's) to price every intent of `given`: what pricing costs a service,
    whatever else shares the cores."""
    evaluate = engine.evaluate
    started = time.thread_time()
    for intent in given:
        evaluate(intent, at=at)
    return time.thread_time() - started


@dataclass(frozen=True)
class FeesResult:
    rules: int
    rules_met: int
    """Rules of the intents' type, which each intent meets."""
    intents: int
    baseline_intents: int
    us: float
    """Median over the rounds, CPU µs per intent."""
    baseline_us: float
    compile_ms: float
    """Compiling the whole rule set once, ms (the engine caches expressions by text after that)."""
    fees_per_intent: float


def run(count: int = INTENTS, baseline_count: int = BASELINE_INTENTS, rounds: int = 3) -> FeesResult:
    """Price `count` intents `rounds` times with the engine and `baseline_count` with cel-python."""
    rules = stored_rules()
    at = datetime.now(UTC)
    started = time.perf_counter()
    engine = FeeEngine(rules)
    compile_ms = (time.perf_counter() - started) * 1000
    reference = ReferenceEngine(rules)
    given = intents(count)
    checked = given[:baseline_count]
    fees = [engine.evaluate(intent, at=at) for intent in checked]
    if fees != [reference.evaluate(intent, at=at) for intent in checked]:
        raise RuntimeError("the fee engine and cel-python disagree on the benchmark's intents")
    us = statistics.median(_price_all(engine, given, at) for _ in range(rounds)) / count * 1e6
    baseline = statistics.median(_price_all(reference, checked, at) for _ in range(rounds))
    return FeesResult(
        rules=len(rules),
        rules_met=sum(1 for rule in rules if rule.operation_type == "P2P"),
        intents=count,
        baseline_intents=baseline_count,
        us=us,
        baseline_us=baseline / baseline_count * 1e6,
        compile_ms=compile_ms,
        fees_per_intent=sum(len(f) for f in fees) / len(fees),
    )


def section(result: FeesResult) -> model.Section:
    priced = model.Benchmark(
        name=f"P2P intent priced against {result.rules} stored rules ({result.rules_met} of its type)",
        unit="intents/s",
        throughput=1e6 / result.us,
        baseline_name="cel-python (celpy CompiledRunner), the same rules and intents",
        baseline=1e6 / result.baseline_us,
        ratio=result.baseline_us / result.us,
        goal=f"≤ {GOAL_US:g} µs per intent",
        goal_met=result.us <= GOAL_US,
        extra={
            "µs per intent": result.us,
            "cel-python µs per intent": result.baseline_us,
            "fees per intent": result.fees_per_intent,
            "compile ms (whole rule set)": result.compile_ms,
        },
    )
    return model.Section(
        name="fee engine",
        description=(
            f"FeeEngine.evaluate on {result.intents:,} P2P intents between demo wallets (new pair and "
            "amount each), CPU time of this thread, median of the rounds; cel-python on "
            f"{result.baseline_intents:,} of them beside it, both giving the same fees."
        ),
        benchmarks=[priced],
        goals_met=result.us <= GOAL_US,
    )


def table(result: FeesResult) -> Table:
    shown = Table(title="Fee engine")
    for column in ("figure", "value", "baseline", "goal"):
        shown.add_column(column)
    shown.add_row(
        f"price a P2P intent, {result.rules_met} rules of {result.rules}",
        f"{result.us:.1f} µs ({result.fees_per_intent:.2f} fees)",
        f"cel-python {result.baseline_us:.0f} µs (×{result.baseline_us / result.us:.0f})",
        f"≤ {GOAL_US:g} µs",
    )
    return shown
