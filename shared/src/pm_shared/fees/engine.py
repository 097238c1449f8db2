"""Pricing an intent with fee rules: each rule's CEL `condition` and `amount` are compiled once, then
evaluated per intent over a single variable `intent`:

    intent.type, intent.amount (int, minor units), intent.currency,
    intent.source.kind / intent.source.id, intent.target.kind / intent.target.id (id may be null),
    intent.requiresMonitoring (bool), intent.metadata (map string -> string)

`condition` must give a bool and `amount` an int in minor units of the intent's currency (CEL divides
ints as integers: `intent.amount / 100`). Whatever goes wrong in a rule is a `FeeEvaluationError`.

The evaluator is the Rust-backed `common-expression-language` package (`expressions`), chosen by
measurement over cel-python (docs/bench.md, "Fee engine"); cel-python stays as `reference`, the
oracle the tests hold this engine to. An engine keeps the last intent's values bound in one CEL
context and converts only the ones that changed; a lock keeps two threads from sharing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import cel
import msgspec

from pm_shared.fees import expressions
from pm_shared.fees.expressions import Expression
from pm_shared.fees.rules import FeeRule

# FeeEvaluationError.code
FEE_RULE_ERROR = "FEE_RULE_ERROR"  # the expression failed, or gave a value of the wrong type
FEE_INVALID = "FEE_INVALID"  # the amount is negative or not an integer
FEE_EXCESSIVE = "FEE_EXCESSIVE"  # the amount is above the rule's max_fee


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

    def as_map(self) -> dict[str, object]:
        """The CEL variable `intent`, as plain Python values."""
        return {
            "type": self.type,
            "amount": self.amount,
            "currency": self.currency,
            "source": {"kind": self.source_kind, "id": self.source_id},
            "target": {"kind": self.target_kind, "id": self.target_id},
            "requiresMonitoring": self.requires_monitoring,
            "metadata": dict(self.metadata),
        }


# The value of each variable of expressions.NAMES for an intent.
_VALUES: dict[str, Callable[[FeeInput], object]] = {
    "_pm_intent_type": lambda i: i.type,
    "_pm_intent_amount": lambda i: i.amount,
    "_pm_intent_currency": lambda i: i.currency,
    "_pm_intent_source_kind": lambda i: i.source_kind,
    "_pm_intent_source_id": lambda i: i.source_id,
    "_pm_intent_source": lambda i: {"kind": i.source_kind, "id": i.source_id},
    "_pm_intent_target_kind": lambda i: i.target_kind,
    "_pm_intent_target_id": lambda i: i.target_id,
    "_pm_intent_target": lambda i: {"kind": i.target_kind, "id": i.target_id},
    "_pm_intent_requiresMonitoring": lambda i: i.requires_monitoring,
    "_pm_intent_metadata": lambda i: dict(i.metadata),
    expressions.WHOLE: FeeInput.as_map,
}
assert set(_VALUES) == expressions.NAMES


class AppliedFee(msgspec.Struct, frozen=True):
    """One fee an intent pays: which rule version priced it, how much, when, by whom, credited where.

    A Struct, not a frozen dataclass: one is made for nearly every intent priced (a percentage fee
    differs with the amount), and a frozen dataclass took 2.9 µs to make against 0.24 µs."""

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
    condition: Expression | None  # None: the condition is the literal `true`
    amount: Expression
    constant: int | None = None
    """The amount, when its expression reads no variable and gives a valid fee: not evaluated per intent."""
    made: dict[tuple[int, str], AppliedFee] = field(default_factory=dict, compare=False, repr=False)
    """The fees it gave, by (amount, currency), to hand out again: a flat fee is built once."""

    @property
    def names(self) -> frozenset[str]:
        """The variables the rule reads."""
        return self.amount.names | (self.condition.names if self.condition is not None else frozenset())

    def is_active(self, at: datetime) -> bool:
        rule = self.rule
        return rule.active_from <= at and (rule.active_until is None or at < rule.active_until)


def _expression(rule: FeeRule, field_name: str, text: str) -> Expression:
    try:
        return expressions.compile_expression(text)
    except Exception as exc:  # ValueError for a syntax error; anything else is still the text's fault
        raise FeeRuleError(rule.rule_id, field_name, f"does not compile: {exc}") from exc


def compile_rule(rule: FeeRule) -> CompiledRule:
    """Compile both expressions of `rule`; FeeRuleError names the rule and the field that failed."""
    for name, value in (("active_from", rule.active_from), ("active_until", rule.active_until)):
        if value is not None and value.tzinfo is None:
            raise FeeRuleError(rule.rule_id, name, "must be timezone-aware")
    condition = _expression(rule, "condition", rule.condition)
    amount = _expression(rule, "amount", rule.amount)
    return CompiledRule(
        rule, None if rule.condition.strip() == "true" else condition, amount, _constant(rule, amount)
    )


def _constant(rule: FeeRule, amount: Expression) -> int | None:
    """The value of an amount that reads no variable (`"500"`), if it is a valid fee; None otherwise
    (then it is evaluated per intent, so a bad one fails as any other would)."""
    if amount.names:
        return None
    try:
        value = amount.program.execute(cel.Context())
    except Exception:
        return None
    return value if type(value) is int and 0 <= value <= rule.max_fee else None


def describe(exc: BaseException) -> str:
    """The evaluator's message for a failed expression, with a hint where CEL's strictness is the cause."""
    if isinstance(exc, KeyError):
        text = f"no such key: {exc.args[0]!r}" if exc.args else "no such key"
    else:
        text = str(exc) or repr(exc)
    if "no such overload" in text.lower():
        text += " (CEL has no implicit conversions: int, double and string do not mix)"
    return text


_CEL_TYPES: dict[type, str] = {
    type(None): "null",
    bool: "bool",
    int: "int",
    float: "double",
    str: "string",
    bytes: "bytes",
    list: "list",
    dict: "map",
    datetime: "timestamp",
    timedelta: "duration",
    date: "timestamp",
}


def cel_type(value: object) -> str:
    """The CEL name of a value's type, for messages."""
    return _CEL_TYPES.get(type(value), type(value).__name__)


def check_condition(rule: FeeRule, matched: object) -> bool:
    """The value of a condition, which must be a bool."""
    if type(matched) is not bool:
        raise FeeEvaluationError(
            FEE_RULE_ERROR,
            rule.rule_id,
            rule.version,
            f"condition gave a {cel_type(matched)} ({matched!r}), not a bool",
        )
    return matched


def check_amount(rule: FeeRule, value: object) -> int:
    """The fee an amount expression gave, which must be an int from 0 to the rule's max_fee."""
    if isinstance(value, bool):
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
            f"amount gave a {cel_type(value)} ({value!r}), not an int",
        )
    amount = int(value)
    if amount < 0:
        raise FeeEvaluationError(FEE_INVALID, rule.rule_id, rule.version, f"amount gave {amount}, below 0")
    if amount > rule.max_fee:
        raise FeeEvaluationError(
            FEE_EXCESSIVE, rule.rule_id, rule.version, f"amount gave {amount}, above max_fee {rule.max_fee}"
        )
    return amount


def applied(rule: FeeRule, amount: int, currency: str) -> AppliedFee:
    return AppliedFee(
        rule_id=rule.rule_id,
        rule_version=rule.version,
        amount=amount,
        currency=currency,
        timing=rule.timing,
        payer=rule.payer,
        fee_account_code=rule.fee_account_code,
    )


def _failed(rule: FeeRule, field_name: str, exc: Exception) -> FeeEvaluationError:
    """The error for an expression of `rule` that raised `exc` (ValueError, TypeError, KeyError, ...)."""
    return FeeEvaluationError(
        FEE_RULE_ERROR, rule.rule_id, rule.version, f"{field_name} failed: {describe(exc)}"
    )


_UNSET = object()
_MADE = 1024  # fees kept per rule


def _made(compiled: CompiledRule, amount: int, currency: str) -> AppliedFee:
    """A new fee of `compiled`, kept to be handed out again (at most _MADE per rule)."""
    if len(compiled.made) >= _MADE:
        compiled.made.clear()
    fee = compiled.made[amount, currency] = applied(compiled.rule, amount, currency)
    return fee


def _window(rules: list[CompiledRule], at: datetime) -> tuple[datetime | None, datetime | None]:
    """The instants around `at` between which no rule of `rules` starts or ends: [low, high)."""
    low: datetime | None = None
    high: datetime | None = None
    for compiled in rules:
        for edge in (compiled.rule.active_from, compiled.rule.active_until):
            if edge is None:
                continue
            if edge <= at:
                low = edge if low is None or edge > low else low
            elif high is None or edge < high:
                high = edge
    return low, high


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
        # Per type, the variables its rules read (each with its value's getter).
        self._names: dict[str, list[tuple[str, Callable[[FeeInput], object]]]] = {
            kind: [(name, _VALUES[name]) for name in sorted(frozenset().union(*(c.names for c in rules)))]
            for kind, rules in self._by_type.items()
        }
        # Per type, the rules active in the window [low, high) last asked about.
        self._active: dict[str, tuple[datetime | None, datetime | None, list[CompiledRule]]] = {}
        self._context = cel.Context()
        self._bound: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[FeeRule]:
        """Every rule of the engine, by (operation_type, priority, rule_id)."""
        return list(self._rules)

    def _bind(self, intent: FeeInput) -> cel.Context:
        """The context with `intent`'s values of the variables its type's rules read, converting only
        those that changed since the last intent (hold the lock)."""
        context, bound = self._context, self._bound
        for name, value_of in self._names[intent.type]:
            value = value_of(intent)
            before = bound.get(name, _UNSET)
            if type(before) is not type(value) or before != value:
                context.add_variable(name, value)
                bound[name] = value
        return context

    def _candidates(self, kind: str, at: datetime) -> list[CompiledRule]:
        """The rules of type `kind` active at `at`, from the last window asked about while it holds."""
        known = self._active.get(kind)
        if known is not None:
            low, high, active = known
            if (low is None or low <= at) and (high is None or at < high):
                return active
        rules = self._by_type.get(kind, [])
        active = [c for c in rules if c.is_active(at)]
        self._active[kind] = (*_window(rules, at), active)
        return active

    def evaluate(self, intent: FeeInput, *, at: datetime) -> list[AppliedFee]:
        """The fees `intent` pays under the rules of its type active at `at`, in priority order.

        A rule whose condition is false, or whose amount is 0, adds nothing. The first rule that fails
        raises FeeEvaluationError.
        """
        candidates = self._candidates(intent.type, at)
        if not candidates:
            return []
        fees: list[AppliedFee] = []
        with self._lock:
            context = self._bind(intent)
            for compiled in candidates:
                rule = compiled.rule
                # The common case inline; anything else goes through the checks that say what is wrong.
                if compiled.condition is not None:
                    try:
                        matched = compiled.condition.program.execute(context)
                    except Exception as exc:
                        raise _failed(rule, "condition", exc) from exc
                    if matched is not True:
                        if matched is False:
                            continue
                        check_condition(rule, matched)  # raises: not a bool
                value = compiled.constant
                if value is None:
                    try:
                        value = compiled.amount.program.execute(context)
                    except Exception as exc:
                        raise _failed(rule, "amount", exc) from exc
                    if type(value) is not int or not 0 <= value <= rule.max_fee:
                        value = check_amount(rule, value)
                if value:
                    fee = compiled.made.get((value, intent.currency))
                    fees.append(fee if fee is not None else _made(compiled, value, intent.currency))
        return fees
