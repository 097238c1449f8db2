"""pm_shared.fees: compiling and evaluating CEL fee rules (pure), and pm.fee_rule on real PostgreSQL."""

from __future__ import annotations

import dataclasses
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pm_shared.db import Conn
from pm_shared.fees import (
    FEE_EXCESSIVE,
    FEE_INVALID,
    FEE_RULE_ERROR,
    AppliedFee,
    FeeEngine,
    FeeEvaluationError,
    FeeInput,
    FeeRule,
    FeeRuleError,
    compile_rule,
    insert_rule,
    load_rules,
    rules_fingerprint,
)
from pm_shared.fees.expressions import compile_expression

T0 = datetime(2025, 1, 1, tzinfo=UTC)
NOW = datetime(2025, 6, 1, tzinfo=UTC)


def rule(rule_id: str = "p2p-fee", **changes: Any) -> FeeRule:
    base = FeeRule(
        rule_id=rule_id,
        version=1,
        operation_type="P2P",
        condition="true",
        amount="intent.amount / 100",
        timing="PRE",
        payer="source",
        fee_account_code=10,
        priority=100,
        max_fee=1_000_000,
        active_from=T0,
        active_until=None,
    )
    return dataclasses.replace(base, **changes)


def intent(**changes: Any) -> FeeInput:
    base = FeeInput(
        type="P2P",
        amount=150_000,
        currency="THB",
        source_kind="user",
        source_id="u-1",
        target_kind="user",
        target_id="u-2",
    )
    return dataclasses.replace(base, **changes)


def evaluate(*rules: FeeRule, at: datetime = NOW, **intent_changes: Any) -> list[AppliedFee]:
    return FeeEngine(rules).evaluate(intent(**intent_changes), at=at)


def failure(*rules: FeeRule, **intent_changes: Any) -> FeeEvaluationError:
    with pytest.raises(FeeEvaluationError) as info:
        evaluate(*rules, **intent_changes)
    return info.value


# compiling


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"condition": "intent.amount >="}, "condition"), ({"amount": "intent.amount / (100"}, "amount")],
)
def test_a_rule_that_does_not_compile_is_refused_naming_rule_and_field(
    changes: dict[str, str], field: str
) -> None:
    bad = rule("broken-rule", **changes)

    with pytest.raises(FeeRuleError) as info:
        compile_rule(bad)
    assert info.value.rule_id == "broken-rule" and info.value.field == field
    assert "broken-rule" in str(info.value) and field in str(info.value)

    with pytest.raises(FeeRuleError) as in_engine:
        FeeEngine([rule("fine"), bad])
    assert in_engine.value.rule_id == "broken-rule" and in_engine.value.field == field


def test_a_naive_active_window_is_refused() -> None:
    with pytest.raises(FeeRuleError) as info:
        compile_rule(rule(active_from=datetime(2025, 1, 1)))
    assert info.value.field == "active_from"


# evaluating


def test_the_example_expressions_price_as_integers_in_minor_units() -> None:
    fees = evaluate(
        rule("percent", condition="intent.amount >= 100000", amount="intent.amount / 100", priority=1),
        rule("mixed", amount="intent.amount * 15 / 1000 + 500", priority=2),
        rule(
            "gold",
            condition='"tier" in intent.metadata && intent.metadata["tier"] == "gold"',
            amount="7",
            priority=3,
        ),
        rule("promptpay", condition='intent.target.kind == "promptpay"', amount="9", priority=4),
        rule("monitored", condition="intent.requiresMonitoring", amount="11", priority=5),
        amount=150_099,
        metadata={"tier": "gold"},
        requires_monitoring=True,
    )

    assert [(f.rule_id, f.amount) for f in fees] == [
        ("percent", 1500),
        ("mixed", 150_099 * 15 // 1000 + 500),
        ("gold", 7),
        ("monitored", 11),
    ]
    assert all(f.currency == "THB" and f.rule_version == 1 for f in fees)


def test_a_false_condition_skips_the_rule() -> None:
    rules = (
        rule("big", condition="intent.amount >= 100000"),
        rule("gold", condition='"tier" in intent.metadata && intent.metadata["tier"] == "gold"'),
    )

    assert evaluate(*rules, amount=99_999) == []
    assert [f.rule_id for f in evaluate(*rules, amount=100_000, metadata={"tier": "gold"})] == ["big", "gold"]


def test_pre_and_post_fees_carry_timing_payer_and_fee_account() -> None:
    fees = evaluate(
        rule("pre", timing="PRE", amount="10", priority=1),
        rule("post", timing="POST", payer="target", fee_account_code=90, amount="20", priority=2),
    )

    assert fees == [
        AppliedFee("pre", 1, 10, "THB", "PRE", "source", 10),
        AppliedFee("post", 1, 20, "THB", "POST", "target", 90),
    ]


def test_fees_come_in_priority_then_rule_id_order() -> None:
    engine = FeeEngine([rule("c", priority=5), rule("b", priority=1), rule("a", priority=5)])

    assert [f.rule_id for f in engine.evaluate(intent(), at=NOW)] == ["b", "a", "c"]
    assert [r.rule_id for r in engine.rules] == ["b", "a", "c"]


def test_only_the_rules_of_the_intent_type_are_evaluated() -> None:
    # This rule errors whenever it is evaluated; a P2P intent must never touch it.
    poison = rule("withdrawal", operation_type="PROMPTPAY_WITHDRAWAL", amount="intent.amount / 0")
    engine = FeeEngine([poison, rule("p2p", amount="5")])

    assert [f.rule_id for f in engine.evaluate(intent(), at=NOW)] == ["p2p"]
    assert engine.evaluate(intent(type="SBP_TOPUP"), at=NOW) == []
    with pytest.raises(FeeEvaluationError) as info:
        engine.evaluate(intent(type="PROMPTPAY_WITHDRAWAL"), at=NOW)
    assert info.value.rule_id == "withdrawal"


def test_only_rules_active_at_the_given_time_apply() -> None:
    window = rule("window", active_from=T0, active_until=T0 + timedelta(days=30))

    assert evaluate(window, at=T0 - timedelta(microseconds=1)) == []
    assert len(evaluate(window, at=T0)) == 1
    assert len(evaluate(window, at=T0 + timedelta(days=30) - timedelta(microseconds=1))) == 1
    assert evaluate(window, at=T0 + timedelta(days=30)) == []


def test_one_engine_follows_the_active_windows_back_and_forth_in_time() -> None:
    engine = FeeEngine(
        [
            rule("early", active_from=T0, active_until=T0 + timedelta(days=30), amount="1"),
            rule("late", active_from=T0 + timedelta(days=10), amount="2"),
        ]
    )
    days = [40, 0, 15, 29, 30, -1, 10, 9, 35]

    fees = [[f.rule_id for f in engine.evaluate(intent(), at=T0 + timedelta(days=d))] for d in days]

    assert fees == [
        ["late"],
        ["early"],
        ["early", "late"],
        ["early", "late"],
        ["late"],
        [],
        ["early", "late"],
        ["early"],
        ["late"],
    ]


def test_one_engine_prices_each_intent_on_its_own_values() -> None:
    engine = FeeEngine(
        [rule("payer", condition='intent.source.id.startsWith("vip-")', amount="intent.amount / 10")]
    )
    payers = ["vip-1", "u-1", "vip-2", "vip-2", "u-2"]

    fees = [engine.evaluate(intent(source_id=p, amount=100 * n), at=NOW) for n, p in enumerate(payers, 1)]

    assert [[f.amount for f in each] for each in fees] == [[10], [], [30], [40], []]


def test_logical_operators_absorb_an_error_the_other_operand_decides() -> None:
    # CEL: `false && error` is false and `true || error` is true (cel-python raised here).
    fees = evaluate(
        rule(
            "and", condition='intent.target.kind == "user" && intent.target.id.startsWith("u-")', amount="1"
        ),
        rule("or", condition='intent.target.kind != "user" || intent.target.id.startsWith("u-")', amount="2"),
        target_kind="promptpay",
        target_id=None,
    )

    assert [f.rule_id for f in fees] == ["or"]


def test_an_expression_is_compiled_once_whatever_its_rule() -> None:
    n = secrets.randbelow(10**9) + 1
    texts = {"condition": f"intent.amount > {n}", "amount": f"intent.amount / {n}"}
    before = compile_expression.cache_info()

    FeeEngine([rule("a", **texts), rule("b", **texts)])
    FeeEngine([rule("a", version=2, **texts)])

    after = compile_expression.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (2, 4)


def test_a_zero_fee_is_skipped() -> None:
    fees = evaluate(rule("zero", amount="intent.amount / 1000000", priority=1), rule("one", amount="1"))

    assert [f.rule_id for f in fees] == ["one"]


@pytest.mark.parametrize(
    ("changes", "code", "says"),
    [
        ({"amount": "intent.amount / 0"}, FEE_RULE_ERROR, "by zero"),
        ({"amount": 'size(intent.metadata["tier"])'}, FEE_RULE_ERROR, "amount failed"),
        ({"amount": 'intent.amount + "1"'}, FEE_RULE_ERROR, "amount failed"),
        ({"amount": "nosuchfunction(1)"}, FEE_RULE_ERROR, "amount failed"),
        ({"amount": "9223372036854775807 + intent.amount"}, FEE_RULE_ERROR, "overflow"),
        ({"amount": '"ten"'}, FEE_RULE_ERROR, "not an int"),
        ({"amount": "true"}, FEE_RULE_ERROR, "a bool, not an int"),
        ({"amount": "intent.target.id"}, FEE_RULE_ERROR, "not an int"),
        ({"condition": "intent.amount"}, FEE_RULE_ERROR, "not a bool"),
        ({"condition": 'intent.metadata["tier"] == "gold"'}, FEE_RULE_ERROR, "condition failed"),
        ({"amount": "intent.amount * 0.01"}, FEE_RULE_ERROR, "no implicit conversions"),
        ({"amount": "double(intent.amount) * 0.01"}, FEE_INVALID, "integers in minor units"),
        ({"amount": "double(intent.amount) / 100.0"}, FEE_INVALID, "integers in minor units"),
        ({"amount": "intent.amount - 200000"}, FEE_INVALID, "below 0"),
        ({"amount": "intent.amount", "max_fee": 149_999}, FEE_EXCESSIVE, "above max_fee 149999"),
        # Amounts that read no variable are worked out once, when compiled: a bad one still fails here.
        ({"amount": "500", "max_fee": 499}, FEE_EXCESSIVE, "above max_fee 499"),
        ({"amount": "2.5"}, FEE_INVALID, "integers in minor units"),
        ({"amount": "1 / 0"}, FEE_RULE_ERROR, "by zero"),
    ],
)
def test_every_failure_is_a_fee_evaluation_error_with_its_code(
    changes: dict[str, Any], code: str, says: str
) -> None:
    error = failure(rule("bad-rule", version=3, **changes), target_id=None)

    assert (error.code, error.rule_id, error.rule_version) == (code, "bad-rule", 3)
    assert says in str(error) and "bad-rule" in str(error)


def test_a_fee_equal_to_max_fee_is_charged() -> None:
    assert evaluate(rule(amount="intent.amount", max_fee=150_000))[0].amount == 150_000


def test_a_constant_amount_is_charged_as_written() -> None:
    fees = evaluate(rule("flat", amount="40 * 5", max_fee=200))

    assert [(fee.rule_id, fee.amount) for fee in fees] == [("flat", 200)]


def test_the_first_failing_rule_stops_evaluation() -> None:
    error = failure(
        rule("ok", priority=1),
        rule("first-bad", amount="-1", priority=2),
        rule("second-bad", amount="1 / 0", priority=3),
    )

    assert error.rule_id == "first-bad" and error.code == FEE_INVALID


# pm.fee_rule


def unique(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"


async def stored(conn: Conn, *rule_ids: str) -> dict[str, FeeRule]:
    return {r.rule_id: r for r in await load_rules(conn) if r.rule_id in rule_ids}


async def test_insert_rule_stores_the_next_version(db_conn: Conn) -> None:
    rule_id = unique("fee")

    first = await insert_rule(db_conn, rule(rule_id, version=42, description="first"))
    second = await insert_rule(db_conn, rule(rule_id, version=7, amount="intent.amount / 50"))

    assert first == rule(rule_id, version=1, description="first")
    assert second == rule(rule_id, version=2, amount="intent.amount / 50")


async def test_load_rules_returns_only_the_newest_active_version(db_conn: Conn) -> None:
    kept, retired, other_type = unique("kept"), unique("retired"), unique("other")
    await insert_rule(db_conn, rule(kept, amount="1"))
    await insert_rule(db_conn, rule(kept, amount="2", active_until=T0 + timedelta(days=1)))
    await insert_rule(db_conn, rule(retired, amount="1"))
    await insert_rule(db_conn, rule(retired, amount="2", status="retired"))
    await insert_rule(db_conn, rule(other_type, operation_type="PROMPTPAY_WITHDRAWAL"))

    rules = await stored(db_conn, kept, retired, other_type)

    assert set(rules) == {kept, other_type}
    assert rules[kept] == rule(kept, version=2, amount="2", active_until=T0 + timedelta(days=1))
    assert FeeEngine(rules.values()).evaluate(intent(), at=T0)[0].amount == 2


async def test_rules_fingerprint_changes_after_an_insert(db_conn: Conn) -> None:
    before = await rules_fingerprint(db_conn)

    await insert_rule(db_conn, rule(unique("fp")))
    after = await rules_fingerprint(db_conn)

    assert after != before
    assert after[0] == before[0] + 1 and after[1] is not None
