"""What the saga prices, limits and routes intents with: fee rules (compiled), limit rules and
payment routes, loaded from PostgreSQL and reloaded without a restart when they change.

A cheap fingerprint query (row counts and newest times; every rule change is a new versioned row)
runs at most every `refresh_s`; only what changed is reloaded. A reload that fails (a rule that no
longer compiles, which the admin API refuses anyway) keeps the previous set and logs why.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from redis.asyncio import Redis

from pm_orchestrator import limits
from pm_orchestrator import queries as q
from pm_shared import fees
from pm_shared.db import Conn, Pool

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    operation_type: str
    channel: str
    steps: tuple[str, ...]


class Rules:
    def __init__(self, redis: Redis, pool: Pool, *, refresh_s: float) -> None:
        self._redis = redis
        self._pool = pool
        self._refresh_s = refresh_s
        self._checked = float("-inf")
        self._fingerprint: tuple[tuple[object, object], ...] | None = None
        # Batches are handled concurrently: one looks, the others wait for the first load and then
        # keep using the set in force while a later reload runs.
        self._lock = asyncio.Lock()
        self.fees = fees.FeeEngine([])
        self.limits = limits.Limits(redis, pool, [])
        self.routes: dict[str, Route] = {}

    async def refresh(self, conn: Conn, *, force: bool = False) -> None:
        """Reload whatever changed since the last look, if `refresh_s` has passed (or `force`).

        Returns only once a first set is loaded; each set is swapped in whole, so a concurrent
        batch sees the old rules or the new ones, never an empty or half-loaded set.
        """
        if not force and self._due_in() > 0:
            return
        async with self._lock:
            if not force and self._due_in() > 0:
                return  # another batch looked while this one waited
            self._checked = time.monotonic()
            await self._reload(conn)

    def _due_in(self) -> float:
        if self._fingerprint is None:
            return 0.0
        return self._refresh_s - (time.monotonic() - self._checked)

    async def _reload(self, conn: Conn) -> None:
        row = await conn.fetchrow(q.SELECT_FINGERPRINTS)
        assert row is not None  # scalar subqueries always give one row
        fee_part: tuple[object, object] = (row["fee_count"], row["fee_newest"])
        limit_part = (row["limit_count"], row["limit_newest"])
        route_part = (row["route_count"], row["route_newest"])
        old = self._fingerprint
        if old is None or old[0] != fee_part:
            try:
                self.fees = fees.FeeEngine(await fees.load_rules(conn))
            except fees.FeeRuleError as exc:
                log.error("fee rules not reloaded, the previous set stays in force: %s", exc)
                fee_part = old[0] if old is not None else (None, None)
            else:
                log.info("fee rules loaded: %d in force", len(self.fees.rules))
        if old is None or old[1] != limit_part:
            rules = await limits.load_rules(conn)
            self.limits = limits.Limits(self._redis, self._pool, rules)
            log.info("limit rules loaded: %d in force", len(rules))
        if old is None or old[2] != route_part:
            routes: dict[str, Route] = {}
            for r in await conn.fetch(q.SELECT_ROUTES):
                # One enabled channel per type is used: the first by name (rows come ordered).
                routes.setdefault(
                    r["operation_type"], Route(r["operation_type"], r["channel"], tuple(r["steps"]))
                )
            self.routes = routes
            log.info("payment routes loaded: %s", ", ".join(sorted(routes)) or "none")
        self._fingerprint = (fee_part, limit_part, route_part)
