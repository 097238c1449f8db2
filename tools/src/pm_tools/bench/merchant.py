"""What the merchant-charge and front-door benchmarks share: a merchant onboarded through the admin
API with a mini-app that charges, its payment requests, and end users' requests straight to the
gateway as the front door would send them.

The merchant is onboarded the way an operator does it (`POST /v1/admin/merchants` with an admin key
made for the run, repeated while it answers 202, until the ledger-writer has opened its account;
then `POST /v1/admin/miniapps`), so the fleet needs its ledger-writer and gateway running. The
gateway trusts `X-PM-User` only beside the proxy secret (`PM_GATEWAY_PROXY_SECRET`, made per run).
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec

from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import ALL_OPERATIONS, Permissions, create_key
from pm_tools.bench import queries, workload

MERCHANT_ID = "m-bench"
MINIAPP_ID = "m-bench-app"
CHARGE = "MINIAPP_CHARGE"
PROXY_SECRET_VARIABLE = "PM_GATEWAY_PROXY_SECRET"
USER_HEADER, SECRET_HEADER = "X-PM-User", "X-PM-Proxy-Secret"
MAX_CHARGE = 50_000
"""The mini-app's cap on one charge, above `workload.AMOUNT`."""
ONBOARD_TIMEOUT_S = 30.0
REQUEST_TTL_S = 3_600
"""Payment requests made in bulk stay OPEN this long: longer than any run."""


@dataclass(frozen=True)
class Shop:
    """The run's merchant: its key, the mini-app it charges through, and the front door's secret."""

    key: PMAuth
    key_id: str
    miniapp_id: str
    proxy_secret: str


def proxy_secret() -> str:
    """A fresh proxy secret for one run's gateway (and its front door)."""
    return secrets.token_hex(16)


async def admin_key(dsn: str, kek: str) -> PMAuth:
    """A new admin key in the run's database, readable by its gateway (same key-encryption key)."""
    conn = await db.connect(dsn)
    try:
        made, secret = await create_key(
            conn,
            Cipher.from_setting(kek),
            permissions=Permissions(operations=frozenset({ALL_OPERATIONS}), owners=None, admin=True),
            description="pm bench (admin)",
        )
    finally:
        await conn.close()
    return PMAuth(made.key_id, secret)


async def onboard(gateway: str, admin: PMAuth, secret: str) -> Shop:
    """`MERCHANT_ID` and its mini-app `MINIAPP_ID` (MINIAPP_CHARGE, capped at `MAX_CHARGE`)."""
    body = {"merchantId": MERCHANT_ID, "name": "Bench Shop", "currencies": [workload.CURRENCY]}
    headers = {"Idempotency-Key": f"onboard-{MERCHANT_ID}"}
    deadline = time.monotonic() + ONBOARD_TIMEOUT_S
    async with httpx.AsyncClient(base_url=gateway, auth=admin, timeout=30, trust_env=False) as http:
        while True:
            made = await http.post("/v1/admin/merchants", json=body, headers=headers)
            if made.status_code == 201:
                break
            # 202: the ledger-writer has not opened the account yet; the same request finishes it.
            if made.status_code != 202 or time.monotonic() > deadline:
                raise RuntimeError(f"onboarding the benchmark's merchant: {made.status_code} {made.text}")
            await asyncio.sleep(0.2)
        app = {
            "miniappId": MINIAPP_ID,
            "merchantId": MERCHANT_ID,
            "name": "Bench",
            "operations": [CHARGE],
            "maxCharge": {workload.CURRENCY: MAX_CHARGE},
        }
        listed = await http.post("/v1/admin/miniapps", json=app)
        if listed.status_code not in (200, 201):
            raise RuntimeError(f"adding the benchmark's mini-app: {listed.status_code} {listed.text}")
    found = made.json()
    return Shop(PMAuth(found["keyId"], found["secret"]), found["keyId"], MINIAPP_ID, secret)


def request_body(user: str) -> bytes:
    """`POST /v1/payment-requests`: the merchant asks `user` for `workload.AMOUNT`."""
    return msgspec.json.encode(
        {
            "miniappId": MINIAPP_ID,
            "userId": user,
            "amount": workload.AMOUNT,
            "currency": workload.CURRENCY,
            "description": "pm bench",
        }
    )


def as_front_door(shop: Shop, user: str) -> dict[str, str]:
    """The headers nginx adds to a `/v1/me` request of `user`: what a direct request carries instead."""
    return {USER_HEADER: user, SECRET_HEADER: shop.proxy_secret}


def confirm_path(request_id: str) -> str:
    return f"/v1/me/payment-requests/{request_id}/confirm"


async def open_requests(conn: db.Conn, shop: Shop, users: Sequence[str]) -> list[str]:
    """One OPEN payment request of `workload.AMOUNT` from each of `users`, inserted in bulk as the
    gateway leaves them (untimed set-up for the benchmarks of confirmations): their ids, in order."""
    ids = [uuid.uuid4() for _ in users]
    for start in range(0, len(ids), workload.INSERT_CHUNK):
        chunk = slice(start, start + workload.INSERT_CHUNK)
        await conn.execute(
            queries.INSERT_PAYMENT_REQUESTS,
            MERCHANT_ID,
            shop.miniapp_id,
            shop.key_id,
            workload.AMOUNT,
            workload.CURRENCY,
            secrets.token_bytes(32),
            float(REQUEST_TTL_S),
            ids[chunk],
            list(users[chunk]),
        )
    return [str(i) for i in ids]
