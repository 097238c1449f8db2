"""pm_orchestrator.limits: rules, and reserve/release/rebuild on real Redis and PostgreSQL."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from redis.asyncio import Redis

from pm_orchestrator.limits import (
    Exceeded,
    LimitRule,
    Limits,
    Reservation,
    bangkok_periods,
    load_rules,
    period_bounds,
)
from pm_shared.db import Conn, Pool

AT = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)  # 12:00 in Bangkok


def rule(rule_id: str, subject: str, **changes: Any) -> LimitRule:
    base = LimitRule(
        rule_id=rule_id,
        version=1,
        subject_kind="user",
        subject=subject,
        operation_type="P2P",
        currency="THB",
        period="day",
        max_amount=None,
        max_count=None,
    )
    return dataclasses.replace(base, **changes)


def new_intent() -> str:
    return str(uuid.uuid4())


@pytest.fixture
async def user(redis: Redis) -> AsyncIterator[str]:
    """A user id no other test uses; its limit keys are deleted afterwards."""
    name = f"u-{secrets.token_hex(6)}"
    yield name
    keys = [k async for k in redis.scan_iter(match=f"{{pm:limits:{name}}}:*")]
    if keys:
        await redis.delete(*keys)


async def reserve(limits: Limits, user: str, amount: int, *, at: datetime = AT, **kw: Any) -> Reservation:
    intent_id = kw.pop("intent_id", None) or new_intent()
    return await limits.reserve(
        intent_id=intent_id,
        user=user,
        tier=kw.pop("tier", None),
        operation_type=kw.pop("operation_type", "P2P"),
        currency=kw.pop("currency", "THB"),
        amount=amount,
        at=at,
    )


async def counter(redis: Redis, user: str, period_key: str) -> dict[str, int]:
    raw = await redis.hgetall(f"{{pm:limits:{user}}}:counter:P2P:THB:{period_key}")
    return {k.decode(): int(v) for k, v in raw.items() if k in (b"amount", b"count")}


# periods


def test_bangkok_periods_and_the_day_boundary_at_17_utc() -> None:
    assert bangkok_periods(AT) == {"day": "2026-11-24", "month": "2026-11"}
    assert bangkok_periods(datetime(2026, 11, 24, 16, 59, tzinfo=UTC))["day"] == "2026-11-24"
    assert bangkok_periods(datetime(2026, 11, 24, 17, 0, tzinfo=UTC))["day"] == "2026-11-25"
    assert bangkok_periods(datetime(2026, 11, 30, 17, 0, tzinfo=UTC)) == {
        "day": "2026-12-01",
        "month": "2026-12",
    }
    start, end = period_bounds("month", datetime(2026, 12, 15, tzinfo=UTC))
    assert start == datetime(2026, 11, 30, 17, tzinfo=UTC) and end == datetime(2026, 12, 31, 17, tzinfo=UTC)
    with pytest.raises(ValueError):
        bangkok_periods(datetime(2026, 11, 24))


# rules in PostgreSQL


async def test_load_rules_keeps_the_newest_active_version_per_rule(db_conn: Conn) -> None:
    tag = secrets.token_hex(4)
    insert = """
        INSERT INTO pm.limit_rule (rule_id, version, subject_kind, subject, operation_type, currency, period,
                                   max_amount, max_count, status)
        VALUES ($1, $2, 'tier', 'gold', 'P2P', 'THB', $3, $4, $5, $6)
    """
    await db_conn.execute(insert, f"a-{tag}", 1, "day", 100, None, "active")
    await db_conn.execute(insert, f"a-{tag}", 2, "month", 500, 3, "active")
    await db_conn.execute(insert, f"b-{tag}", 1, "day", 100, None, "active")
    await db_conn.execute(insert, f"b-{tag}", 2, "day", 200, None, "retired")

    mine = [r for r in await load_rules(db_conn) if r.rule_id.endswith(tag)]

    assert mine == [
        LimitRule(
            rule_id=f"a-{tag}",
            version=2,
            subject_kind="tier",
            subject="gold",
            operation_type="P2P",
            currency="THB",
            period="month",
            max_amount=500,
            max_count=3,
        )
    ]


# reserve and release


async def test_day_amount_limit_refuses_the_intent_that_would_exceed_it(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    limits = Limits(redis, db_pool, [rule("day-amount", user, max_amount=1000)])

    assert (await reserve(limits, user, 600)).ok
    refused = await reserve(limits, user, 401)
    assert (await reserve(limits, user, 400)).ok

    assert refused == Reservation(
        ok=False,
        exceeded=Exceeded(
            rule_id="day-amount",
            rule_version=1,
            period="day:2026-11-24",
            limit_amount=1000,
            limit_count=None,
            used_amount=600,
            used_count=1,
        ),
    )
    assert await counter(redis, user, "day:2026-11-24") == {"amount": 1000, "count": 2}


async def test_count_limit(redis: Redis, db_pool: Pool, user: str) -> None:
    limits = Limits(redis, db_pool, [rule("day-count", user, max_count=2)])

    results = [(await reserve(limits, user, 1)).ok for _ in range(3)]

    assert results == [True, True, False]


async def test_a_month_excess_refuses_and_reserves_nothing_on_the_day_counter(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    limits = Limits(
        redis,
        db_pool,
        [rule("day", user, max_amount=1000), rule("month", user, period="month", max_amount=1500)],
    )
    assert (await reserve(limits, user, 900, at=AT - timedelta(days=3))).ok

    refused = await reserve(limits, user, 700)

    assert not refused.ok and refused.exceeded is not None
    assert (refused.exceeded.rule_id, refused.exceeded.period) == ("month", "month:2026-11")
    assert (refused.exceeded.used_amount, refused.exceeded.used_count) == (900, 1)
    assert await counter(redis, user, "day:2026-11-24") == {"amount": 0, "count": 0}
    assert await counter(redis, user, "month:2026-11") == {"amount": 900, "count": 1}


async def test_reserving_the_same_intent_twice_counts_it_once(redis: Redis, db_pool: Pool, user: str) -> None:
    limits = Limits(redis, db_pool, [rule("day", user, max_amount=1000, max_count=5)])
    intent_id = new_intent()

    assert (await reserve(limits, user, 700, intent_id=intent_id)).ok
    assert (await reserve(limits, user, 700, intent_id=intent_id)).ok

    assert await counter(redis, user, "day:2026-11-24") == {"amount": 700, "count": 1}
    assert not (await reserve(limits, user, 700)).ok


async def test_release_gives_back_what_the_intent_reserved_once(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    limits = Limits(
        redis,
        db_pool,
        [rule("day", user, max_amount=1000), rule("month", user, period="month", max_count=10)],
    )
    kept, failed = new_intent(), new_intent()
    assert (await reserve(limits, user, 300, intent_id=kept)).ok
    assert (await reserve(limits, user, 600, intent_id=failed)).ok

    await limits.release(intent_id=failed, user=user)
    await limits.release(intent_id=failed, user=user)
    await limits.release(intent_id=new_intent(), user=user)  # never reserved: nothing to give back

    assert await counter(redis, user, "day:2026-11-24") == {"amount": 300, "count": 1}
    assert await counter(redis, user, "month:2026-11") == {"amount": 300, "count": 1}
    assert (await reserve(limits, user, 700)).ok


async def test_tier_rules_bind_only_users_of_that_tier(redis: Redis, db_pool: Pool, user: str) -> None:
    tier = f"tier-{secrets.token_hex(4)}"
    limits = Limits(redis, db_pool, [rule("tier-cap", tier, subject_kind="tier", max_amount=100)])

    assert (await reserve(limits, user, 500, tier=None)).ok
    assert (await reserve(limits, user, 500, tier="other")).ok
    refused = await reserve(limits, user, 500, tier=tier)
    assert (await reserve(limits, user, 500, tier=tier, currency="USD")).ok

    assert refused.exceeded is not None and refused.exceeded.rule_id == "tier-cap"


async def test_intents_either_side_of_bangkok_midnight_count_on_different_days(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    limits = Limits(redis, db_pool, [rule("day", user, max_count=1)])
    before = datetime(2026, 11, 24, 16, 59, tzinfo=UTC)
    after = datetime(2026, 11, 24, 17, 0, tzinfo=UTC)

    assert (await reserve(limits, user, 10, at=before)).ok
    assert (await reserve(limits, user, 10, at=after)).ok
    assert not (await reserve(limits, user, 10, at=after + timedelta(hours=6))).ok

    assert await counter(redis, user, "day:2026-11-24") == {"amount": 10, "count": 1}
    assert await counter(redis, user, "day:2026-11-25") == {"amount": 10, "count": 1}


# rebuild from PostgreSQL


async def insert_intent(
    pool: Pool, key_id: str, user: str, amount: int, created_at: datetime, state: str
) -> str:
    intent_id = new_intent()
    await pool.execute(
        """
        INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, failure_code, amount,
                               currency, source, target, created_at)
        VALUES ($1::uuid, $2, $3, $4, 'P2P', $5, $6, $7, 'THB', $8::jsonb, $9::jsonb, $10)
        """,
        intent_id,
        key_id,
        intent_id,
        b"\x00" * 32,
        state,
        "DECLINED" if state == "FAILED" else None,
        amount,
        json.dumps({"kind": "user", "id": user}),
        json.dumps({"kind": "user", "id": "u-target"}),
        created_at,
    )
    return intent_id


async def test_lost_counters_are_rebuilt_from_the_intents_in_postgresql(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    key_id = f"pk_{secrets.token_hex(12)}"
    await db_pool.execute(
        "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, $2, $3::jsonb)",
        key_id,
        b"dummy",
        '{"operations": ["P2P"], "owners": null, "admin": false}',
    )
    day = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
    await insert_intent(db_pool, key_id, user, 300, day, "SETTLED")
    await insert_intent(db_pool, key_id, user, 200, day + timedelta(hours=2), "CREATED")
    await insert_intent(db_pool, key_id, user, 5000, day, "FAILED")
    await insert_intent(db_pool, key_id, user, 100, day - timedelta(days=2), "SETTLED")  # same month only
    await insert_intent(db_pool, key_id, user, 100, day + timedelta(hours=16), "SETTLED")  # next Bangkok day
    current = await insert_intent(db_pool, key_id, user, 400, day + timedelta(hours=3), "CREATED")
    limits = Limits(
        redis,
        db_pool,
        [rule("day", user, max_amount=1000), rule("month", user, period="month", max_count=10)],
    )
    assert (await reserve(limits, user, 50)).ok
    keys = [k async for k in redis.scan_iter(match=f"{{pm:limits:{user}}}:*")]
    await redis.delete(*keys)

    assert (await reserve(limits, user, 400, intent_id=current)).ok
    refused = await reserve(limits, user, 101)

    day_counter = await redis.hgetall(f"{{pm:limits:{user}}}:counter:P2P:THB:day:2026-11-24")
    assert b"rebuilt" in day_counter
    assert await counter(redis, user, "day:2026-11-24") == {"amount": 900, "count": 3}
    assert await counter(redis, user, "month:2026-11") == {"amount": 1100, "count": 5}
    assert refused.exceeded is not None
    assert (refused.exceeded.rule_id, refused.exceeded.used_amount, refused.exceeded.used_count) == (
        "day",
        900,
        3,
    )


# concurrency


async def test_twenty_concurrent_reserves_against_a_count_of_five_admit_exactly_five(
    redis: Redis, db_pool: Pool, user: str
) -> None:
    limits = Limits(redis, db_pool, [rule("day", user, max_count=5)])

    results = await asyncio.gather(*(reserve(limits, user, 10) for _ in range(20)))

    assert sum(r.ok for r in results) == 5
    assert await counter(redis, user, "day:2026-11-24") == {"amount": 50, "count": 5}
