"""Rows of merchants' webhooks for the tests of their management (the admin API, the SDK, `pm
webhooks`): a merchant onboarded in the store, and deliveries and attempts written as the sender
(`pm_webhooks`) writes them, so the tests need no sender.

Test support only.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

from pm_shared import db
from pm_shared.db import Pool
from pm_shared.keys.crypto import Cipher
from pm_shared.merchants import store

INSERT_DELIVERY = """
INSERT INTO pm.webhook_delivery (
    webhook_id, endpoint_id, merchant_id, event_type, intent_id, payload, status, attempts,
    last_status_code, last_error, delivered_at
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, CASE WHEN $7 = 'DELIVERED' THEN now() END)
RETURNING id
"""
INSERT_ATTEMPT = """
INSERT INTO pm.webhook_attempt (
    delivery_id, attempt, trigger, at, status_code, error, latency_ms, response_excerpt, actor
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""


async def merchant(pool: Pool, cipher: Cipher, prefix: str = "wh") -> str:
    """A new merchant (its key and row; no ledger accounts), its id."""
    merchant_id = f"{prefix}-{uuid.uuid4().hex[:12]}"
    onboarding = store.Onboarding(
        merchant_id=merchant_id,
        name=f"Merchant {merchant_id}",
        currencies=("THB",),
        created_by="test",
        idempotency_key=merchant_id,
        request_hash=hashlib.sha256(merchant_id.encode()).digest(),
    )
    async with pool.acquire() as conn:
        await store.onboard(conn, cipher, onboarding)
    return merchant_id


def payload(event_type: str, intent_id: str) -> bytes:
    """A body as the sender signs it: `{"type", "timestamp", "data"}`."""
    body = {"type": event_type, "timestamp": "2026-12-07T10:00:00Z", "data": {"intentId": intent_id}}
    return json.dumps(body, separators=(",", ":")).encode()


async def delivery(
    pool: Pool,
    endpoint_id: str,
    merchant_id: str,
    *,
    status: str = "FAILED",
    attempts: int = 0,
    event_type: str = "intent.settled",
) -> int:
    """A delivery with `attempts` attempts (each a 500 but a DELIVERED one's last), its id."""
    intent_id = str(uuid.uuid4())
    failed = status != "DELIVERED"
    async with pool.acquire() as conn, conn.transaction():
        delivery_id: int = await conn.fetchval(
            INSERT_DELIVERY,
            f"msg_{uuid.uuid4().hex}",
            endpoint_id,
            merchant_id,
            event_type,
            intent_id,
            payload(event_type, intent_id),
            status,
            attempts,
            (500 if failed else 204) if attempts else None,
            "HTTP 500" if failed and attempts else None,
        )
        for n in range(1, attempts + 1):
            code = 204 if n == attempts and not failed else 500
            await conn.execute(
                INSERT_ATTEMPT,
                delivery_id,
                n,
                "initial" if n == 1 else "retry",
                datetime.now().astimezone(),
                code,
                None,
                12 * n,
                "ok" if code == 204 else "Internal Server Error",
                None,
            )
    return delivery_id


async def leave_nothing_due(database_url: str) -> None:
    """Fail every delivery still PENDING in the session's database: these tests run no sender, and a
    replay they asked for must not be attempted later by another test's sender (with another key)."""
    conn = await db.connect(database_url, application_name="pm-tests")
    try:
        await conn.execute(
            "UPDATE pm.webhook_delivery SET status = 'FAILED', replay_by = NULL, last_error = 'test over' "
            "WHERE status = 'PENDING'"
        )
    finally:
        await conn.close()
