"""Fee rules as stored in pm.fee_rule: versioned rows, of which the newest active version of each rule
is the one in force."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg
import msgspec

from pm_shared.db import Conn
from pm_shared.fees import queries


@dataclass(frozen=True)
class FeeRule:
    """One version of a fee rule; `condition` and `amount` are CEL over `intent` (see `engine`)."""

    rule_id: str
    version: int
    operation_type: str
    condition: str
    amount: str
    timing: str  # "PRE" | "POST"
    payer: str  # "source" | "target"
    fee_account_code: int
    priority: int
    max_fee: int
    active_from: datetime
    active_until: datetime | None
    status: str = "active"
    description: str = ""

    @classmethod
    def from_record(cls, row: asyncpg.Record) -> FeeRule:
        return cls(
            rule_id=row["rule_id"],
            version=row["version"],
            operation_type=row["operation_type"],
            condition=row["condition"],
            amount=row["amount"],
            timing=row["timing"],
            payer=row["payer"],
            fee_account_code=row["fee_account_code"],
            priority=row["priority"],
            max_fee=row["max_fee"],
            active_from=row["active_from"],
            active_until=row["active_until"],
            status=row["status"],
            description=row["description"],
        )


async def load_rules(conn: Conn) -> list[FeeRule]:
    """The rules in force: per rule_id its newest version, if that version is active."""
    rows = await conn.fetch(queries.SELECT_CURRENT_RULES)
    return [FeeRule.from_record(row) for row in rows]


async def rules_fingerprint(conn: Conn) -> tuple[int, datetime | None]:
    """(row count, newest created_at) of pm.fee_rule: compare with the last one to know when to reload."""
    row = await conn.fetchrow(queries.SELECT_FINGERPRINT)
    assert row is not None  # an aggregate always returns one row
    newest: datetime | None = row["newest"]
    return int(row["rule_count"]), newest


async def insert_rule(conn: Conn, rule: FeeRule) -> FeeRule:
    """Store `rule` as the next version of its rule_id (`rule.version` is ignored) and return the stored row.

    It does not compile the expressions: callers check them first with `engine.compile_rule`.
    """
    row = await conn.fetchrow(queries.INSERT_RULE, msgspec.json.encode(rule).decode())
    assert row is not None  # INSERT ... SELECT from one record inserts exactly one row
    return FeeRule.from_record(row)
