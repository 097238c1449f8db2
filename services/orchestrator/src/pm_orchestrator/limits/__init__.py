"""Spending limits (docs/saga.md): rows of pm.limit_rule (`rules`), reserved and released atomically in
Redis and rebuilt from PostgreSQL when Redis has lost them (`counters`)."""

from pm_orchestrator.limits.counters import (
    BANGKOK,
    Exceeded,
    Limits,
    LimitsError,
    Reservation,
    bangkok_periods,
    period_bounds,
)
from pm_orchestrator.limits.rules import LimitRule, load_rules

__all__ = [
    "BANGKOK",
    "Exceeded",
    "LimitRule",
    "Limits",
    "LimitsError",
    "Reservation",
    "bangkok_periods",
    "load_rules",
    "period_bounds",
]
