"""Spending counters in Redis: every rule that binds an intent is checked and reserved together, in
one Lua script call, and rebuilt from PostgreSQL when Redis has lost them (docs/saga.md).

Keys (all of one user share the hash tag `{pm:limits:<user>}`, so every script is valid on Redis
Cluster):
- `{pm:limits:<user>}:counter:<type>:<currency>:<period key>`, a hash: `amount`, `count`, one field
  `r:<intent id>` per intent counted (the amount it reserved) and `rebuilt` when it was rebuilt
  from PostgreSQL. It expires 2 days (day counters) or 62 days (month counters) after its last write.
- `{pm:limits:<user>}:intent:<intent id>`, a hash: what the intent reserved (`amount`, `counters`)
  and its `state` ("reserved", then "released"), for the idempotency of reserve and release.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from pm_orchestrator.limits import queries
from pm_orchestrator.limits.rules import LimitRule
from pm_shared.db import Pool
from pm_shared.pipelined import Pipelined
from pm_shared.streams.connection import as_str

BANGKOK = ZoneInfo("Asia/Bangkok")
# Counters outlive their period a little: a late release still finds what it gives back.
COUNTER_TTL_S = {"day": 2 * 86_400, "month": 62 * 86_400}
# The intent record covers the longest period.
INTENT_TTL_S = max(COUNTER_TTL_S.values())

_OK = 1
_EXCEEDED = 0
_MISSING = 2

# KEYS[1] the intent record, KEYS[2..n+1] the counters.
# ARGV: intent id, amount, intent ttl, n, the n counter ttls, the counter keys joined by "\n", then per
# rule (counter index, max amount or -1, max count or -1).
# Replies {1} (reserved, or reserved before), {0, rule index, used amount, used count} (nothing
# reserved) or {2, missing counter index, ...} (nothing reserved: rebuild those and call again).
_RESERVE = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {1}
end
local n = tonumber(ARGV[4])
local missing = {2}
for i = 1, n do
  if redis.call('EXISTS', KEYS[i + 1]) == 0 then
    missing[#missing + 1] = i
  end
end
if #missing > 1 then
  return missing
end
local amount = tonumber(ARGV[2])
local used_amount, used_count = {}, {}
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i + 1], 'amount', 'count')
  used_amount[i] = tonumber(v[1]) or 0
  used_count[i] = tonumber(v[2]) or 0
end
local rule = 0
for j = 6 + n, #ARGV, 3 do
  local c = tonumber(ARGV[j])
  local max_amount = tonumber(ARGV[j + 1])
  local max_count = tonumber(ARGV[j + 2])
  if (max_amount >= 0 and used_amount[c] + amount > max_amount)
      or (max_count >= 0 and used_count[c] + 1 > max_count) then
    return {0, rule, used_amount[c], used_count[c]}
  end
  rule = rule + 1
end
local marker = 'r:' .. ARGV[1]
for i = 1, n do
  local key = KEYS[i + 1]
  redis.call('HINCRBY', key, 'amount', ARGV[2])
  redis.call('HINCRBY', key, 'count', 1)
  redis.call('HSET', key, marker, ARGV[2])
  redis.call('EXPIRE', key, ARGV[4 + i])
end
redis.call('HSET', KEYS[1], 'state', 'reserved', 'amount', ARGV[2], 'counters', ARGV[5 + n])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1}
"""

# KEYS[1] the intent record, KEYS[2..] the counters it reserved on; ARGV[1] the intent id.
# Gives back what the intent's marker on each counter says, once; replies how many counters gave back.
_RELEASE = """
local marker = 'r:' .. ARGV[1]
local released = 0
for i = 2, #KEYS do
  local reserved = redis.call('HGET', KEYS[i], marker)
  if reserved then
    redis.call('HINCRBY', KEYS[i], 'amount', '-' .. reserved)
    redis.call('HINCRBY', KEYS[i], 'count', -1)
    redis.call('HDEL', KEYS[i], marker)
    released = released + 1
  end
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'state', 'released')
end
return released
"""

# KEYS[1] a counter; ARGV: amount, count, ttl, rebuilt at. Writes it only if it is still missing (a
# concurrent rebuild, and the reserves after it, win). Replies 1 if written.
_REBUILD = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'amount', ARGV[1], 'count', ARGV[2], 'rebuilt', ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""


class LimitsError(RuntimeError):
    """The counters could not be brought back (they went missing again after a rebuild)."""


@dataclass(frozen=True)
class Exceeded:
    """The first rule an intent would exceed, and what was used of it before the intent.

    `period` is the period key, such as "day:2026-11-24" or "month:2026-11" (Asia/Bangkok).
    """

    rule_id: str
    rule_version: int
    period: str
    limit_amount: int | None
    limit_count: int | None
    used_amount: int
    used_count: int


@dataclass(frozen=True)
class Reservation:
    """The result of `Limits.reserve`: `ok`, or refused with the rule it would exceed."""

    ok: bool
    exceeded: Exceeded | None = None


def bangkok_periods(at: datetime) -> dict[str, str]:
    """The Asia/Bangkok day and month `at` falls in: {"day": "2026-11-24", "month": "2026-11"}."""
    if at.tzinfo is None:
        raise ValueError("at must be timezone-aware")
    local = at.astimezone(BANGKOK)
    return {"day": local.strftime("%Y-%m-%d"), "month": local.strftime("%Y-%m")}


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the Asia/Bangkok `period` ("day" or "month") that `at` falls in."""
    local = at.astimezone(BANGKOK).date()
    if period == "day":
        start, end = local, date.fromordinal(local.toordinal() + 1)
    elif period == "month":
        start = local.replace(day=1)
        end = date(start.year + start.month // 12, start.month % 12 + 1, 1)
    else:
        raise ValueError(f"unknown period {period!r}")
    return _midnight(start), _midnight(end)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=BANGKOK)


def user_tag(user: str) -> str:
    """The hash tag of a user's keys; ids with braces (which would break the tag) are hashed."""
    name = user if "{" not in user and "}" not in user else hashlib.sha256(user.encode()).hexdigest()
    return f"{{pm:limits:{name}}}"


def counter_key(user: str, operation_type: str, currency: str, period_key: str) -> str:
    return f"{user_tag(user)}:counter:{operation_type}:{currency}:{period_key}"


def intent_key(user: str, intent_id: str) -> str:
    return f"{user_tag(user)}:intent:{intent_id}"


class Limits:
    """Reserves an intent against every limit rule that binds it, and releases it when it fails.

    `rules` are the rules in force (see `load_rules`); `pool` is used only to rebuild counters that
    Redis has lost. A settled intent keeps its reservation: there is nothing to call.
    """

    def __init__(self, redis: Redis, pool: Pool, rules: Iterable[LimitRule]) -> None:
        self.redis = redis
        self.pool = pool
        # Day rules before month rules, then by id: the order in which an excess is reported.
        self.rules = sorted(rules, key=lambda r: (r.period != "day", r.rule_id, r.version))
        self._reserve = redis.register_script(_RESERVE)
        # Concurrent reserves (a batch's intakes are planned together) share one round trip.
        self._calls = Pipelined(redis)
        self._release = redis.register_script(_RELEASE)
        self._rebuild = redis.register_script(_REBUILD)

    def matching(self, *, user: str, tier: str | None, operation_type: str, currency: str) -> list[LimitRule]:
        """The rules that bind an intent of `user` (of `tier`), in the order they are checked."""
        return [
            r
            for r in self.rules
            if r.binds(user=user, tier=tier, operation_type=operation_type, currency=currency)
        ]

    async def reserve(
        self,
        *,
        intent_id: str,
        user: str,
        tier: str | None,
        operation_type: str,
        currency: str,
        amount: int,
        at: datetime,
    ) -> Reservation:
        """Count `amount` (and one operation) against every rule binding the intent, or nothing at all.

        Idempotent per `intent_id`: a retry after a success (or after a release) counts nothing again.
        Counters Redis has lost are rebuilt from pm.intent and the reserve is tried once more.
        """
        if amount <= 0:
            raise ValueError("amount must be positive")
        rules = self.matching(user=user, tier=tier, operation_type=operation_type, currency=currency)
        if not rules:
            return Reservation(ok=True)
        periods = bangkok_periods(at)
        counter_periods: list[str] = []  # "day" / "month", one per counter
        for rule in rules:
            if rule.period not in counter_periods:
                counter_periods.append(rule.period)
        period_keys = [f"{p}:{periods[p]}" for p in counter_periods]
        keys = [counter_key(user, operation_type, currency, k) for k in period_keys]
        args: list[str | int] = [intent_id, amount, INTENT_TTL_S, len(keys)]
        args.extend(COUNTER_TTL_S[p] for p in counter_periods)
        args.append("\n".join(keys))
        for rule in rules:
            args.append(counter_periods.index(rule.period) + 1)
            args.append(-1 if rule.max_amount is None else rule.max_amount)
            args.append(-1 if rule.max_count is None else rule.max_count)
        record = intent_key(user, intent_id)
        reserve_keys = [record, *keys]

        def queue(pipe: Pipeline) -> object:
            return self._reserve(keys=reserve_keys, args=args, client=pipe)

        for attempt in range(2):
            reply = [int(v) for v in await self._calls(queue)]
            if reply[0] == _OK:
                return Reservation(ok=True)
            if reply[0] == _EXCEEDED:
                rule = rules[reply[1]]
                return Reservation(
                    ok=False,
                    exceeded=Exceeded(
                        rule_id=rule.rule_id,
                        rule_version=rule.version,
                        period=f"{rule.period}:{periods[rule.period]}",
                        limit_amount=rule.max_amount,
                        limit_count=rule.max_count,
                        used_amount=reply[2],
                        used_count=reply[3],
                    ),
                )
            if attempt == 0:
                missing = [counter_periods[i - 1] for i in reply[1:]]
                await self._rebuild_counters(
                    intent_id=intent_id,
                    user=user,
                    operation_type=operation_type,
                    currency=currency,
                    periods=missing,
                    at=at,
                )
        raise LimitsError(f"limit counters of {user} went missing again after a rebuild")

    async def _rebuild_counters(
        self,
        *,
        intent_id: str,
        user: str,
        operation_type: str,
        currency: str,
        periods: Sequence[str],
        at: datetime,
    ) -> None:
        """Write the missing counters from pm.intent: the user's intents of that type and currency
        created in the period, but failed ones and `intent_id` itself."""
        rebuilt_at = datetime.now(UTC).isoformat()
        period_keys = bangkok_periods(at)
        async with self.pool.acquire() as conn:
            for period in periods:
                start, end = period_bounds(period, at)
                row = await conn.fetchrow(
                    queries.SELECT_USAGE, user, operation_type, currency, start, end, intent_id
                )
                assert row is not None  # an aggregate always returns one row
                key = counter_key(user, operation_type, currency, f"{period}:{period_keys[period]}")
                await self._rebuild(
                    keys=[key],
                    args=[int(row["used_amount"]), int(row["used_count"]), COUNTER_TTL_S[period], rebuilt_at],
                )

    async def release(self, *, intent_id: str, user: str) -> None:
        """Give back exactly what `reserve` counted for `intent_id` (on FAILED). Idempotent; a no-op for
        an intent that reserved nothing or whose reservation Redis no longer holds."""
        record = intent_key(user, intent_id)
        counters = await self.redis.hget(record, "counters")
        if not counters:
            return
        keys = as_str(counters).split("\n")
        await self._release(keys=[record, *keys], args=[intent_id])
