"""Mini-apps as stored (`pm.miniapp`, docs/api.md "Mini-apps"): a merchant's app, the intent types it
may be used for, and a cap on one charge per currency. The catalog is an admin's; `create` is
idempotent on the mini-app id (the same definition again is the same mini-app, another is a conflict).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from pm_shared.db import Conn
from pm_shared.merchants import queries
from pm_shared.merchants.store import ACTIVE, MerchantNotFoundError, get


class MiniappNotFoundError(LookupError):
    pass


class MiniappConflictError(Exception):
    """The id names another mini-app (another merchant, name, operations or cap)."""


@dataclass(frozen=True)
class Miniapp:
    miniapp_id: str
    merchant_id: str
    name: str
    status: str
    operations: frozenset[str]
    max_charge: dict[str, int]
    created_by: str
    created_at: datetime
    deactivated_at: datetime | None

    @property
    def active(self) -> bool:
        return self.status == ACTIVE

    def same_definition(
        self, merchant_id: str, name: str, operations: frozenset[str], max_charge: dict[str, int]
    ) -> bool:
        return (self.merchant_id, self.name, self.operations, self.max_charge) == (
            merchant_id,
            name,
            operations,
            max_charge,
        )


def _miniapp(row: asyncpg.Record) -> Miniapp:
    cap = row["max_charge"]
    return Miniapp(
        miniapp_id=row["miniapp_id"],
        merchant_id=row["merchant_id"],
        name=row["name"],
        status=row["status"],
        operations=frozenset(row["operations"]),
        max_charge={k: int(v) for k, v in (json.loads(cap) if isinstance(cap, str) else cap).items()},
        created_by=row["created_by"],
        created_at=row["created_at"],
        deactivated_at=row["deactivated_at"],
    )


def from_json(text: str) -> Miniapp:
    """A mini-app from its row as JSON (`to_jsonb(m)`), as a query that reads it beside other rows
    returns it."""
    data = json.loads(text)
    deactivated = data["deactivated_at"]
    return Miniapp(
        miniapp_id=data["miniapp_id"],
        merchant_id=data["merchant_id"],
        name=data["name"],
        status=data["status"],
        operations=frozenset(data["operations"]),
        max_charge={k: int(v) for k, v in data["max_charge"].items()},
        created_by=data["created_by"],
        created_at=datetime.fromisoformat(data["created_at"]),
        deactivated_at=None if deactivated is None else datetime.fromisoformat(deactivated),
    )


async def create(
    conn: Conn,
    *,
    miniapp_id: str,
    merchant_id: str,
    name: str,
    operations: frozenset[str],
    max_charge: dict[str, int],
    actor: str,
) -> tuple[Miniapp, bool]:
    """The mini-app, and whether this call created it. MerchantNotFoundError for an unknown merchant,
    MiniappConflictError when the id is another mini-app's."""
    await get(conn, merchant_id)  # MerchantNotFoundError
    row = await conn.fetchrow(
        queries.INSERT_MINIAPP,
        miniapp_id,
        merchant_id,
        name,
        sorted(operations),
        json.dumps(max_charge, sort_keys=True),
        actor,
    )
    if row is not None:
        return _miniapp(row), True
    found = await lookup(conn, miniapp_id)
    if not found.same_definition(merchant_id, name, operations, max_charge):
        raise MiniappConflictError(miniapp_id)
    return found, False


async def lookup(conn: Conn, miniapp_id: str) -> Miniapp:
    row = await conn.fetchrow(queries.SELECT_MINIAPP, miniapp_id)
    if row is None:
        raise MiniappNotFoundError(miniapp_id)
    return _miniapp(row)


async def list_all(conn: Conn, merchant_id: str | None = None) -> list[Miniapp]:
    return [_miniapp(r) for r in await conn.fetch(queries.SELECT_MINIAPPS, merchant_id)]


async def deactivate(conn: Conn, miniapp_id: str) -> Miniapp:
    row = await conn.fetchrow(queries.DEACTIVATE_MINIAPP, miniapp_id)
    if row is None:
        raise MiniappNotFoundError(miniapp_id)
    return _miniapp(row)


__all__ = ["MerchantNotFoundError", "Miniapp", "MiniappConflictError", "MiniappNotFoundError"]
