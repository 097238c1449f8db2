"""An SBP top-up into a THB wallet through the gateway (no orchestrator runs: intents stay CREATED): it
is priced at intake in roubles, and a repeat of the request answers with its intent even once the rate
has gone stale, while a new top-up is refused until a fresh rate is set. (Paying the QR and the
exchange settling: tests/test_psp_sbp.py.)"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest

from pm_tools.testing.gateway import Gateway

MAX_AGE_S = 2


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    return fresh_database_url


@pytest.fixture
def gateway_env() -> dict[str, str]:
    return {"PM_FX_RATE_MAX_AGE_S": str(MAX_AGE_S)}


def topup(user: str, amount: int = 40_000) -> dict[str, Any]:
    return {"type": "SBP_TOPUP", "amount": amount, "currency": "THB", "from": {"kind": "sbp"},
            "to": {"kind": "user", "id": user}}  # fmt: skip


async def test_a_repeated_topup_is_its_intent_even_once_the_rate_is_stale(gateway: Gateway) -> None:
    rate = {"pair": "THB/RUB", "rate": "2.5", "spreadBps": 100}
    assert (await gateway.send("POST", "/v1/admin/fx/rates", rate, key=gateway.admin)).status_code == 201
    user = f"u-{uuid.uuid4().hex[:8]}"
    headers = {"Idempotency-Key": "topup-1"}
    made = await gateway.send("POST", "/v1/intents", topup(user), key=gateway.user, headers=headers)
    assert made.status_code == 202, made.text
    intent = made.json()
    assert (intent["amount"], intent["currency"], intent["exchange"]["buyAmount"]) == (101_000, "RUB", 40_000)
    await asyncio.sleep(MAX_AGE_S + 0.5)
    again = await gateway.send("POST", "/v1/intents", topup(user), key=gateway.user, headers=headers)
    assert (again.status_code, again.json()["id"]) == (202, intent["id"]), again.text
    other = await gateway.send("POST", "/v1/intents", topup(user, 1_000), key=gateway.user, headers=headers)
    assert (other.status_code, other.json()["code"]) == (409, "idempotency_key_reused")
    fresh = await gateway.send(
        "POST", "/v1/intents", topup(user), key=gateway.user, headers={"Idempotency-Key": "2"}
    )
    assert (fresh.status_code, fresh.json()["code"]) == (422, "rate_stale"), fresh.text
