"""Admin routes for fee rules, limit rules and payment routes, and `POST /v1/fees/dry-run`.

Rules are versioned: creating a rule with an existing id stores its next version, and retiring one
stores a last version with status `retired`. A fee rule whose CEL does not compile is refused with
the compiler's message before anything is stored.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import asyncpg
import msgspec
from msgspec.structs import asdict
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import (
    CreateIntent,
    Fee,
    FeeBreakdown,
    FeeQuote,
    FeeRuleIn,
    FeeRuleOut,
    FieldError,
    LimitRuleIn,
    LimitRuleOut,
    Party,
    RouteIn,
    RouteOut,
)
from pm_gateway import merchant_access, shapes, web
from pm_gateway import queries as q
from pm_gateway.auth import require_admin, require_operation, require_owner
from pm_gateway.problems import ProblemError
from pm_shared.fees.engine import FeeEngine, FeeEvaluationError, FeeInput, FeeRuleError, compile_rule
from pm_shared.fees.rules import FeeRule, load_rules


async def _admin(request: Request) -> None:
    require_admin(await web.caller(request))


def _fee_out(row: asyncpg.Record) -> FeeRuleOut:
    return FeeRuleOut(**{k: row[k] for k in row.keys()})  # noqa: SIM118 (Record has no iterator over keys)


def _limit_out(row: asyncpg.Record) -> LimitRuleOut:
    return LimitRuleOut(**{k: row[k] for k in row.keys()})  # noqa: SIM118


def _route_out(row: asyncpg.Record) -> RouteOut:
    return RouteOut(
        operation_type=row["operation_type"],
        channel=row["channel"],
        steps=list(row["steps"]),
        enabled=row["enabled"],
        updated_at=row["updated_at"],
    )


# --- fee rules -----------------------------------------------------------------------------------


async def list_fee_rules(request: Request) -> Response:
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        rows = await conn.fetch(q.LIST_FEE_RULES)
    return web.json([_fee_out(r) for r in rows])


async def create_fee_rule(request: Request) -> Response:
    wanted: FeeRuleIn = web.inputs(request).body
    if wanted.active_until is not None and wanted.active_until <= (wanted.active_from or datetime.now(UTC)):
        raise ProblemError(
            422,
            "validation_failed",
            "activeUntil must be after activeFrom (or now, when activeFrom is not given)",
            errors=[FieldError(path="$.activeUntil", message="must be after activeFrom")],
        )
    rule = FeeRule(
        rule_id=wanted.rule_id,
        version=1,
        operation_type=wanted.operation_type,
        condition=wanted.condition,
        amount=wanted.amount,
        timing=wanted.timing,
        payer=wanted.payer,
        fee_account_code=wanted.fee_account_code,
        priority=wanted.priority,
        max_fee=wanted.max_fee,
        active_from=wanted.active_from or datetime.now(UTC),
        active_until=wanted.active_until,
        description=wanted.description,
    )
    await _admin(request)  # before the CEL compiler runs: its work is for admins only
    try:
        compile_rule(rule)
    except FeeRuleError as exc:
        raise ProblemError(
            422, "fee_rule_invalid", str(exc), errors=[FieldError(path=f"$.{exc.field}", message=str(exc))]
        ) from None
    # Stored with the database's clock when no activeFrom was given.
    row = await _insert_version(
        request, q.INSERT_FEE_RULE_VERSION, _row({**asdict(wanted), "status": "active"})
    )
    return web.json(_fee_out(row), 201)


async def retire_fee_rule(request: Request) -> Response:
    rule_id: str = web.inputs(request).params["rule_id"]
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        latest = await conn.fetchrow(q.LATEST_FEE_RULE, rule_id)
    if latest is None:
        raise ProblemError(404, "rule_not_found", "no such fee rule")
    if latest["status"] == "retired":
        return web.json(_fee_out(latest))
    row = await _insert_version(
        request, q.INSERT_FEE_RULE_VERSION, _row({**dict(latest), "status": "retired"})
    )
    return web.json(_fee_out(row))


def _row(fields: dict[str, object]) -> str:
    """A row as JSON, named by column (see pm_shared.fees.queries.INSERT_RULE)."""
    return msgspec.json.encode(fields).decode()


async def _insert_version(request: Request, sql: str, *args: object) -> asyncpg.Record:
    for _ in range(5):
        try:
            async with web.deps(request).pool.acquire() as conn:
                row = await conn.fetchrow(sql, *args)
        except asyncpg.UniqueViolationError:
            continue  # another admin stored the same next version first: take the one after
        assert row is not None
        return row
    raise ProblemError(409, "rule_conflict", "the rule is being changed concurrently; retry")


# --- limit rules ---------------------------------------------------------------------------------


async def list_limit_rules(request: Request) -> Response:
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        rows = await conn.fetch(q.LIST_LIMIT_RULES)
    return web.json([_limit_out(r) for r in rows])


async def create_limit_rule(request: Request) -> Response:
    wanted: LimitRuleIn = web.inputs(request).body
    await _admin(request)
    row = await _insert_version(
        request,
        q.INSERT_LIMIT_RULE_VERSION,
        wanted.rule_id,
        wanted.subject_kind,
        wanted.subject,
        wanted.operation_type,
        wanted.currency,
        wanted.period,
        wanted.max_amount,
        wanted.max_count,
        "active",
    )
    return web.json(_limit_out(row), 201)


async def retire_limit_rule(request: Request) -> Response:
    rule_id: str = web.inputs(request).params["rule_id"]
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        latest = await conn.fetchrow(q.LATEST_LIMIT_RULE, rule_id)
    if latest is None:
        raise ProblemError(404, "rule_not_found", "no such limit rule")
    if latest["status"] == "retired":
        return web.json(_limit_out(latest))
    fields = [latest[k] for k in ("subject_kind", "subject", "operation_type", "currency", "period")]
    row = await _insert_version(
        request,
        q.INSERT_LIMIT_RULE_VERSION,
        rule_id,
        *fields,
        latest["max_amount"],
        latest["max_count"],
        "retired",
    )
    return web.json(_limit_out(row))


# --- routes --------------------------------------------------------------------------------------


async def list_routes(request: Request) -> Response:
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        rows = await conn.fetch(q.LIST_ROUTES)
    return web.json([_route_out(r) for r in rows])


async def put_route(request: Request) -> Response:
    given = web.inputs(request)
    wanted: RouteIn = given.body
    operation, channel = given.params["operation_type"], given.params["channel"]
    await _admin(request)
    async with web.deps(request).pool.acquire() as conn:
        row = await conn.fetchrow(q.UPSERT_ROUTE, operation, channel, wanted.steps, wanted.enabled)
    assert row is not None
    return web.json(_route_out(row))


# --- dry run -------------------------------------------------------------------------------------


def _kind_id(party: Party) -> tuple[str, str | None]:
    tag = type(party).__struct_config__.tag
    return str(tag), getattr(party, "id", None)


_NO_QUOTE = uuid.UUID(int=0)


async def dry_run(request: Request) -> Response:
    d = web.deps(request)
    quote: FeeQuote = web.inputs(request).body
    as_intent = CreateIntent(
        type=quote.type,
        amount=quote.amount,
        currency=quote.currency,
        from_=quote.from_,
        to=quote.to,
        miniapp_id=quote.miniapp_id,
        # A dry run prices the fee rules only: an exchange's spread comes with its FX quote, and a
        # refund's original is checked when it is made.
        quote_id=_NO_QUOTE if quote.type == "FX_EXCHANGE" else None,
        original_intent_id=_NO_QUOTE if quote.type == "REFUND" else None,
    )
    shapes.check(as_intent)
    caller = await web.caller(request)
    require_operation(caller, quote.type)
    require_owner(caller, shapes.acting_owner(as_intent))
    async with d.pool.acquire() as conn:
        await merchant_access.check(conn, caller, as_intent)
    async with d.pool.acquire() as conn:
        rules = await load_rules(conn)
    source_kind, source_id = _kind_id(quote.from_)
    target_kind, target_id = _kind_id(quote.to)
    try:
        engine = FeeEngine(rules)
        applied = engine.evaluate(
            FeeInput(
                type=quote.type,
                amount=quote.amount,
                currency=quote.currency,
                source_kind=source_kind,
                source_id=source_id,
                target_kind=target_kind,
                target_id=target_id,
                requires_monitoring=quote.requires_monitoring,
                metadata=quote.metadata,
            ),
            at=datetime.now(UTC),
        )
    except FeeRuleError as exc:
        raise ProblemError(422, "fee_rule_invalid", str(exc)) from None
    except FeeEvaluationError as exc:
        raise ProblemError(422, exc.code.lower(), str(exc)) from None
    fees = [
        Fee(
            rule_id=f.rule_id,
            rule_version=f.rule_version,
            amount=f.amount,
            currency=f.currency,
            timing="PRE" if f.timing == "PRE" else "POST",
        )
        for f in applied
    ]
    return web.json(FeeBreakdown(fees=fees, total=sum(f.amount for f in fees), currency=quote.currency))
