"""Reading back what happened, once the run is quiet: PostgreSQL (intents, the embedded ledger, PSP
attempts, alerts) and Redis (pending lists, dead letters). The invariants judge these rows."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_client.api import TERMINAL_STATES
from pm_shared import db
from pm_shared.messages import psp_key
from pm_shared.streams import dlq
from pm_shared.streams.connection import as_str
from pm_shared.streams.names import ALL_STREAMS, dlq_key, parse_key, stream_key
from pm_tools.chaos.invariants import intent_of_payload
from pm_tools.chaos.rows import (
    BOUNDED,
    AccountFact,
    AlertFact,
    DeadLetterFact,
    Facts,
    IntentFact,
    PendingEntry,
    PspFact,
    TransferFact,
)

INTENTS_SQL = """
SELECT i.id::text AS id, i.type, i.state, i.failure_code, i.amount, i.currency, i.source, i.target,
       i.fees, i.route, i.step, i.created_at, i.exchange,
       (SELECT max(e.at) FROM pm.intent_event e
        WHERE e.intent_id = i.id AND e.to_state = ANY($1::text[])) AS terminal_at
FROM pm.intent i
"""
OPEN_SQL = "SELECT count(*) FROM pm.intent WHERE state <> ALL($1::text[])"
TERMINAL = sorted(TERMINAL_STATES)
"""$1 of INTENTS_SQL and OPEN_SQL."""
TRANSFERS_SQL = """
SELECT id::text, user_data_128::text AS intent_id, amount, flags, ledger, pending_id::text, pending_status,
       debit_account_id::text, credit_account_id::text, code
FROM ledger.transfers
"""
ACCOUNTS_SQL = """
SELECT id::text, ledger, code, debits_pending, debits_posted, credits_pending, credits_posted
FROM ledger.accounts
"""
OWNED_SQL = """
SELECT owner_kind, owner_id, currency, account_id::text FROM pm.tb_account_map
WHERE (owner_kind, code) IN (SELECT * FROM unnest($1::text[], $2::int[]))
"""
"""Every user wallet and merchant account PM mapped ($1, $2: `BOUNDED`'s owner kinds and codes)."""
ALERTS_SQL = "SELECT kind, intent_id, stream, entry_id FROM pm.reconciliation_alert"
PSP_SQL = "SELECT intent_id, phase, status, failure_code FROM pm.psp_tx_map"
HELD_SQL = "SELECT count(*) FROM ledger.transfers WHERE pending_status = 1"


def _json(value: object) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


async def open_intents(database_url: str) -> int:
    conn = await db.connect(database_url)
    try:
        return int(await conn.fetchval(OPEN_SQL, TERMINAL))
    finally:
        await conn.close()


async def held_transfers(database_url: str) -> int:
    """Pending ledger transfers not yet posted, voided or expired."""
    conn = await db.connect(database_url)
    try:
        return int(await conn.fetchval(HELD_SQL))
    finally:
        await conn.close()


async def read_database(database_url: str, facts: Facts) -> None:
    conn = await db.connect(database_url)
    try:
        for r in await conn.fetch(INTENTS_SQL, TERMINAL):
            facts.intents[r["id"]] = IntentFact(
                id=r["id"],
                type=r["type"],
                state=r["state"],
                failure_code=r["failure_code"],
                amount=int(r["amount"]),
                currency=str(r["currency"]).strip(),
                source=_json(r["source"]),
                target=_json(r["target"]),
                fees=_json(r["fees"]) or [],
                route=list(r["route"]) if r["route"] is not None else None,
                step=r["step"],
                created_at=r["created_at"],
                terminal_at=r["terminal_at"],
                exchange=_json(r["exchange"]),
            )
        facts.transfers = [
            TransferFact(
                id=r["id"],
                intent_id=r["intent_id"],
                amount=int(r["amount"]),
                flags=int(r["flags"]),
                ledger=int(r["ledger"]),
                pending_id=r["pending_id"],
                pending_status=r["pending_status"],
                debit_account_id=r["debit_account_id"],
                credit_account_id=r["credit_account_id"],
                code=int(r["code"]),
            )
            for r in await conn.fetch(TRANSFERS_SQL)
        ]
        facts.accounts = [
            AccountFact(
                id=r["id"],
                ledger=int(r["ledger"]),
                code=int(r["code"]),
                debits_pending=int(r["debits_pending"]),
                debits_posted=int(r["debits_posted"]),
                credits_pending=int(r["credits_pending"]),
                credits_posted=int(r["credits_posted"]),
            )
            for r in await conn.fetch(ACCOUNTS_SQL)
        ]
        for r in await conn.fetch(OWNED_SQL, list(BOUNDED), list(BOUNDED.values())):
            owner = (r["owner_kind"], r["owner_id"], str(r["currency"]).strip())
            facts.owned[owner] = r["account_id"]
        facts.alerts = [
            AlertFact(r["kind"], r["intent_id"], r["stream"], r["entry_id"])
            for r in await conn.fetch(ALERTS_SQL)
        ]
        facts.psp = [
            PspFact(r["intent_id"], r["phase"], r["status"], r["failure_code"])
            for r in await conn.fetch(PSP_SQL)
        ]
    finally:
        await conn.close()


async def pending_entries(redis: Redis, partitions: int = 1) -> list[PendingEntry]:
    """Every entry of every group's pending list, with its idle time and delivery count."""
    out: list[PendingEntry] = []
    for spec in ALL_STREAMS:
        for partition in range(partitions):
            key = stream_key(spec.name, partition)
            for group in spec.groups:
                try:
                    rows = await redis.xpending_range(key, group, min="-", max="+", count=10_000)
                except ResponseError:
                    continue  # no such stream or group
                out.extend(
                    PendingEntry(
                        key,
                        group,
                        as_str(r["message_id"]),
                        as_str(r["consumer"]),
                        int(r["time_since_delivered"]),
                        int(r["times_delivered"]),
                    )
                    for r in rows
                )
    return out


async def dead_letters(redis: Redis, partitions: int = 1) -> list[DeadLetterFact]:
    keys = [dlq_key(spec.name, p) for spec in ALL_STREAMS for p in range(partitions)]
    out: list[DeadLetterFact] = []
    for entry in await dlq.entries(redis, keys):
        name, _ = parse_key(entry.dlq)
        out.append(
            DeadLetterFact(
                dlq=entry.dlq,
                entry_id=entry.id,
                stream=name,
                reason=entry.reason,
                error=entry.fields.get("error", ""),
                intent_id=intent_of_payload(entry.payload),
            )
        )
    return out


async def read_ipps(ipps_url: str, facts: Facts, concurrency: int = 16) -> None:
    """What the IPPS sandbox holds under each withdrawal's payout key, and what it paid in all."""
    withdrawals = [i.id for i in facts.intents.values() if i.type == "PROMPTPAY_WITHDRAWAL"]
    async with httpx.AsyncClient(base_url=ipps_url, timeout=10.0) as http:

        async def one(intent_id: str) -> None:
            response = await http.get(
                "/v1/transfers", params={"idempotency_key": psp_key(intent_id, "psp_payout")}
            )
            if response.status_code == 404:
                facts.payouts[intent_id] = None
            else:
                response.raise_for_status()
                body = response.json()
                facts.payouts[intent_id] = (str(body["status"]), int(body["amount"]))

        queue = list(withdrawals)

        async def worker() -> None:
            while queue:
                await one(queue.pop())

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        facts.ipps_paid = int((await http.get("/_sim/ledger")).json()["paid"])


async def read_all(database_url: str, redis: Redis, ipps_url: str | None = None) -> Facts:
    facts = Facts()
    await read_database(database_url, facts)
    if ipps_url is not None:
        await read_ipps(ipps_url, facts)
    facts.pending = await pending_entries(redis)
    facts.dead_letters = await dead_letters(redis)
    return facts
