"""Reconciliation alerts as `pm alerts` reads and resolves them (`pm.reconciliation_alert`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from pm_shared import db
from pm_tools import queries as q


@dataclass(frozen=True)
class Alert:
    """One alert: what went wrong (`kind`, `detail`), for which intent, where (a DLQ record)."""

    id: int
    kind: str
    intent_id: str | None
    stream: str
    entry_id: str | None
    detail: dict[str, Any]
    created_at: datetime
    resolved_at: datetime | None


def _detail(value: Any) -> dict[str, Any]:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    decoded = msgspec.json.decode(raw)
    return decoded if isinstance(decoded, dict) else {"detail": decoded}


async def newest(url: str, *, include_resolved: bool, limit: int) -> list[Alert]:
    """Open alerts (or all of them), newest first, at most `limit`."""
    conn = await db.connect(url)
    try:
        rows = await conn.fetch(q.SELECT_ALERTS, include_resolved, limit)
    finally:
        await conn.close()
    return [
        Alert(
            id=row["id"],
            kind=row["kind"],
            intent_id=row["intent_id"],
            stream=row["stream"],
            entry_id=row["entry_id"],
            detail=_detail(row["detail"]),
            created_at=row["created_at"],
            resolved_at=row["resolved_at"],
        )
        for row in rows
    ]


async def resolve(url: str, ids: Sequence[int]) -> tuple[set[int], set[int]]:
    """Mark these alerts resolved: (the ids that name an alert, the ids resolved now). Nothing is
    marked when an id names no alert (a typo among them); one resolved already keeps its time."""
    conn = await db.connect(url)
    try:
        async with conn.transaction():
            known = {r["id"] for r in await conn.fetch(q.SELECT_KNOWN_IDS, list(ids))}
            if known != set(ids):
                return known, set()
            done = {r["id"] for r in await conn.fetch(q.RESOLVE_ALERTS, sorted(known))}
    finally:
        await conn.close()
    return known, done
