"""The fee engine as it was on cel-python (celpy's CompiledRunner): the oracle the tests hold
`engine.FeeEngine` to, and the baseline `pm bench --fees` measures it against. Same rules, same
checks on what an expression gives (`engine.check_condition`, `engine.check_amount`), same errors;
only the evaluator differs, and the error messages with it.

It runs in celpy's module globals: evaluate from one thread.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError, Context

from pm_shared.fees.engine import (
    FEE_RULE_ERROR,
    AppliedFee,
    FeeEvaluationError,
    FeeInput,
    FeeRuleError,
    applied,
    check_amount,
    check_condition,
)
from pm_shared.fees.rules import FeeRule

_ENV = celpy.Environment(runner_class=celpy.CompiledRunner)


def _program(rule: FeeRule, field_name: str, text: str) -> celpy.Runner:
    try:
        return _ENV.program(_ENV.compile(text))
    except Exception as exc:  # CELParseError, or anything celpy's transpiler refuses a tree with
        raise FeeRuleError(rule.rule_id, field_name, f"does not compile: {exc!r}") from exc


def _describe(exc: BaseException) -> str:
    """celpy nests its errors as ("evaluation error", type, (message, type, args)); keep the messages."""
    parts: list[str] = []
    args: tuple[object, ...] = exc.args
    while args and isinstance(args[0], str):
        if args[0] != "evaluation error":
            parts.append(args[0])
        if len(args) >= 3 and isinstance(args[2], tuple):
            args = args[2]
        else:
            break
    return ": ".join(parts) or repr(exc)


def _native(value: object) -> object:
    """celpy's value as the plain Python value the Rust evaluator gives (its types subclass them)."""
    if isinstance(value, celtypes.BoolType | bool):
        return bool(value)  # BoolType subclasses int: before int
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _run(rule: FeeRule, field_name: str, runner: celpy.Runner, activation: Context) -> object:
    try:
        value: object = runner.evaluate(activation)
    except Exception as exc:  # CELEvalError, or anything else celpy lets through
        raise FeeEvaluationError(
            FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {_describe(exc)}"
        ) from exc
    if isinstance(value, CELEvalError):
        raise FeeEvaluationError(
            FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {_describe(value)}"
        )
    return _native(value)


class ReferenceEngine:
    """`engine.FeeEngine` on cel-python: the same constructor and `evaluate`."""

    def __init__(self, rules: Iterable[FeeRule]) -> None:
        compiled = sorted(
            (
                (rule, _program(rule, "condition", rule.condition), _program(rule, "amount", rule.amount))
                for rule in rules
            ),
            key=lambda c: (c[0].operation_type, c[0].priority, c[0].rule_id, c[0].version),
        )
        self._by_type: dict[str, list[tuple[FeeRule, celpy.Runner | None, celpy.Runner]]] = {}
        for rule, condition, amount in compiled:
            literal_true = rule.condition.strip() == "true"
            entry = (rule, None if literal_true else condition, amount)
            self._by_type.setdefault(rule.operation_type, []).append(entry)

    def evaluate(self, intent: FeeInput, *, at: datetime) -> list[AppliedFee]:
        candidates = [
            c
            for c in self._by_type.get(intent.type, ())
            if c[0].active_from <= at and (c[0].active_until is None or at < c[0].active_until)
        ]
        if not candidates:
            return []
        value: celtypes.Value = json_to_cel(intent.as_map())
        activation: Context = {"intent": value}
        fees: list[AppliedFee] = []
        for rule, condition, amount_runner in candidates:
            if condition is not None and not check_condition(
                rule, _run(rule, "condition", condition, activation)
            ):
                continue
            amount = check_amount(rule, _run(rule, "amount", amount_runner, activation))
            if amount:
                fees.append(applied(rule, amount, intent.currency))
        return fees
