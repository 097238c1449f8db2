"""Fees as CEL rules (docs/saga.md): rows of pm.fee_rule (`rules`), pricing an intent with them (`engine`)."""

from pm_shared.fees.engine import (
    FEE_EXCESSIVE,
    FEE_INVALID,
    FEE_RULE_ERROR,
    AppliedFee,
    CompiledRule,
    FeeEngine,
    FeeEvaluationError,
    FeeInput,
    FeeRuleError,
    compile_rule,
)
from pm_shared.fees.rules import FeeRule, insert_rule, load_rules, rules_fingerprint

__all__ = [
    "FEE_EXCESSIVE",
    "FEE_INVALID",
    "FEE_RULE_ERROR",
    "AppliedFee",
    "CompiledRule",
    "FeeEngine",
    "FeeEvaluationError",
    "FeeInput",
    "FeeRule",
    "FeeRuleError",
    "compile_rule",
    "insert_rule",
    "load_rules",
    "rules_fingerprint",
]
