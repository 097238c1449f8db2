"""Pricing an intent with fee rules: each rule's CEL `condition` and `amount` are compiled once, then
evaluated per intent over a single variable `intent`:

    intent.type, intent.amount (int, minor units), intent.currency,
    intent.source.kind / intent.source.id, intent.target.kind / intent.target.id (id may be null),
    intent.requiresMonitoring (bool), intent.metadata (map string -> string)

`condition` must give a bool and `amount` an int in minor units of the intent's currency (CEL divides
ints as integers: `intent.amount / 100`). Whatever goes wrong in a rule is a `FeeEvaluationError`.

The compiled runner executes in celpy's module globals, so evaluate from one thread (asyncio is fine).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

import celpy
from celpy import celtypes
from celpy.adapter import json_to_cel
from celpy.celparser import CELParseError
from celpy.evaluation import CELEvalError, Context

from pm_shared.fees.rules import FeeRule

# FeeEvaluationError.code
FEE_RULE_ERROR = "FEE_RULE_ERROR"  # the expression failed, or gave a value of the wrong type
FEE_INVALID = "FEE_INVALID"  # the amount is negative or not an integer
FEE_EXCESSIVE = "FEE_EXCESSIVE"  # the amount is above the rule's max_fee

_ENV = celpy.Environment(runner_class=celpy.CompiledRunner)


class FeeRuleError(ValueError):
    """A rule that cannot be used: an expression that does not compile (or a naive active window)."""

    def __init__(self, rule_id: str, field: str, message: str) -> None:
        super().__init__(f"fee rule {rule_id!r}: {field}: {message}")
        self.rule_id = rule_id
        self.field = field


class FeeEvaluationError(Exception):
    """A rule failed while pricing an intent; `code` is FEE_RULE_ERROR, FEE_INVALID or FEE_EXCESSIVE."""

    def __init__(self, code: str, rule_id: str, rule_version: int, message: str) -> None:
        super().__init__(f"{code}: fee rule {rule_id!r} v{rule_version}: {message}")
        self.code = code
        self.rule_id = rule_id
        self.rule_version = rule_version


@dataclass(frozen=True)
class FeeInput:
    """What the rules see of an intent."""

    type: str
    amount: int
    currency: str
    source_kind: str
    source_id: str | None
    target_kind: str
    target_id: str | None
    requires_monitoring: bool = False
    metadata: Mapping[str, str] = field(default_factory=dict)

    def to_cel(self) -> celtypes.Value:
        return json_to_cel(
            {
                "type": self.type,
                "amount": self.amount,
                "currency": self.currency,
                "source": {"kind": self.source_kind, "id": self.source_id},
                "target": {"kind": self.target_kind, "id": self.target_id},
                "requiresMonitoring": self.requires_monitoring,
                "metadata": dict(self.metadata),
            }
        )


@dataclass(frozen=True)
class AppliedFee:
    """One fee an intent pays: which rule version priced it, how much, when, by whom, credited where."""

    rule_id: str
    rule_version: int
    amount: int
    currency: str
    timing: str
    payer: str
    fee_account_code: int


@dataclass(frozen=True)
class CompiledRule:
    rule: FeeRule
    condition: celpy.Runner | None  # None: the condition is the literal `true`
    amount: celpy.Runner

    def is_active(self, at: datetime) -> bool:
        rule = self.rule
        return rule.active_from <= at and (rule.active_until is None or at < rule.active_until)


def _program(rule: FeeRule, field_name: str, text: str) -> celpy.Runner:
    try:
        return _ENV.program(_ENV.compile(text))
    except CELParseError as exc:
        raise FeeRuleError(rule.rule_id, field_name, f"does not compile: {exc}") from exc
    except Exception as exc:  # celpy's transpiler can refuse a parsed tree with any exception
        raise FeeRuleError(rule.rule_id, field_name, f"does not compile: {exc!r}") from exc


def compile_rule(rule: FeeRule) -> CompiledRule:
    """Compile both expressions of `rule`; FeeRuleError names the rule and the field that failed."""
    for name, value in (("active_from", rule.active_from), ("active_until", rule.active_until)):
        if value is not None and value.tzinfo is None:
            raise FeeRuleError(rule.rule_id, name, "must be timezone-aware")
    condition = _program(rule, "condition", rule.condition)
    amount = _program(rule, "amount", rule.amount)
    return CompiledRule(rule, None if rule.condition.strip() == "true" else condition, amount)


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
    text = ": ".join(parts) or repr(exc)
    if "no such overload" in text:
        text += " (CEL has no implicit conversions: int, double and string do not mix)"
    return text


def _run(compiled: CompiledRule, field_name: str, runner: celpy.Runner, activation: Context) -> object:
    rule = compiled.rule
    try:
        value: object = runner.evaluate(activation)
    except CELEvalError as exc:
        raise FeeEvaluationError(
            FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {_describe(exc)}"
        ) from exc
    except Exception as exc:  # anything else celpy lets through is still the rule's problem
        raise FeeEvaluationError(
            FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {exc!r}"
        ) from exc
    if isinstance(value, CELEvalError):
        raise FeeEvaluationError(
            FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {_describe(value)}"
        )
    return value


def _cel_type(value: object) -> str:
    return type(value).__name__.removesuffix("Type").lower() if value is not None else "null"


def _price(compiled: CompiledRule, activation: Context) -> int | None:
    """The fee `compiled` charges, or None when its condition is false."""
    rule = compiled.rule
    if compiled.condition is not None:
        matched = _run(compiled, "condition", compiled.condition, activation)
        if not isinstance(matched, celtypes.BoolType | bool):
            raise FeeEvaluationError(
                FEE_RULE_ERROR,
                rule.rule_id,
                rule.version,
                f"condition gave a {_cel_type(matched)} ({matched!r}), not a bool",
            )
        if not matched:
            return None
    value = _run(compiled, "amount", compiled.amount, activation)
    # celpy sometimes gives a plain float or int rather than its own DoubleType / IntType.
    if isinstance(value, celtypes.BoolType | bool):
        raise FeeEvaluationError(FEE_RULE_ERROR, rule.rule_id, rule.version, "amount gave a bool, not an int")
    if isinstance(value, float):
        raise FeeEvaluationError(
            FEE_INVALID,
            rule.rule_id,
            rule.version,
            f"amount gave the double {float(value)!r}; fees are integers in minor units"
            " (use integer arithmetic, e.g. `intent.amount * 15 / 1000`)",
        )
    if not isinstance(value, int):
        raise FeeEvaluationError(
            FEE_RULE_ERROR,
            rule.rule_id,
            rule.version,
            f"amount gave a {_cel_type(value)} ({value!r}), not an int",
        )
    amount = int(value)
    if amount < 0:
        raise FeeEvaluationError(FEE_INVALID, rule.rule_id, rule.version, f"amount gave {amount}, below 0")
    if amount > rule.max_fee:
        raise FeeEvaluationError(
            FEE_EXCESSIVE, rule.rule_id, rule.version, f"amount gave {amount}, above max_fee {rule.max_fee}"
        )
    return amount


class FeeEngine:
    """Rules compiled once and indexed by operation type, each type's rules in (priority, rule_id) order."""

    def __init__(self, rules: Iterable[FeeRule]) -> None:
        compiled = sorted(
            (compile_rule(rule) for rule in rules),
            key=lambda c: (c.rule.operation_type, c.rule.priority, c.rule.rule_id, c.rule.version),
        )
        self._rules = [c.rule for c in compiled]
        self._by_type: dict[str, list[CompiledRule]] = {}
        for c in compiled:
            self._by_type.setdefault(c.rule.operation_type, []).append(c)

    @property
    def rules(self) -> list[FeeRule]:
        """Every rule of the engine, by (operation_type, priority, rule_id)."""
        return list(self._rules)

    def evaluate(self, intent: FeeInput, *, at: datetime) -> list[AppliedFee]:
        """The fees `intent` pays under the rules of its type active at `at`, in priority order.

        A rule whose condition is false, or whose amount is 0, adds nothing. The first rule that fails
        raises FeeEvaluationError.
        """
        candidates = [c for c in self._by_type.get(intent.type, ()) if c.is_active(at)]
        if not candidates:
            return []
        activation: Context = {"intent": intent.to_cel()}
        fees: list[AppliedFee] = []
        for compiled in candidates:
            amount = _price(compiled, activation)
            if not amount:
                continue
            rule = compiled.rule
            fees.append(
                AppliedFee(
                    rule_id=rule.rule_id,
                    rule_version=rule.version,
                    amount=amount,
                    currency=intent.currency,
                    timing=rule.timing,
                    payer=rule.payer,
                    fee_account_code=rule.fee_account_code,
                )
            )
        return fees
