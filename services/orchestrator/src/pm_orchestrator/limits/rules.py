"""Limit rules as stored in pm.limit_rule: versioned rows, of which the newest active version of each
rule is the one in force."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from pm_orchestrator.limits import queries
from pm_shared.db import Conn

PERIODS = ("day", "month")


@dataclass(frozen=True)
class LimitRule:
    """One version of a limit rule: a cap on one user's (or one tier's users') spending.

    `subject_kind` is "user" (`subject` is a user id) or "tier" (`subject` is a tier name); `period`
    is "day" or "month", calendar periods in Asia/Bangkok time. At least one of `max_amount` (minor
    units of `currency`) and `max_count` is set.
    """

    rule_id: str
    version: int
    subject_kind: str
    subject: str
    operation_type: str
    currency: str
    period: str
    max_amount: int | None
    max_count: int | None

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> LimitRule:
        return cls(
            rule_id=row["rule_id"],
            version=row["version"],
            subject_kind=row["subject_kind"],
            subject=row["subject"],
            operation_type=row["operation_type"],
            currency=row["currency"],
            period=row["period"],
            max_amount=row["max_amount"],
            max_count=row["max_count"],
        )

    def binds(self, *, user: str, tier: str | None, operation_type: str, currency: str) -> bool:
        """Whether this rule applies to an intent of `user` (of `tier`, if known)."""
        if self.operation_type != operation_type or self.currency != currency:
            return False
        if self.subject_kind == "user":
            return self.subject == user
        return self.subject_kind == "tier" and tier is not None and self.subject == tier


async def load_rules(conn: Conn) -> list[LimitRule]:
    """The rules in force: per rule_id its newest version, if that version is active."""
    rows = await conn.fetch(queries.SELECT_CURRENT_RULES)
    return [LimitRule.from_record(row) for row in rows]
