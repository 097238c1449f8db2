"""Signed requests (docs/api.md): every refusal has its own code, and a refused request changes nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis

from pm_client import signing
from pm_gateway.auth import claim_nonce
from pm_shared import db
from pm_shared.keys.store import Permissions, deactivate_key, rotate_key
from pm_shared.pipelined import Pipelined
from pm_shared.streams.names import INTENTS, stream_key
from pm_tools.testing.gateway import ALL_TYPES, Gateway, Key

INTENTS_KEY = stream_key(INTENTS.name, 0)


def p2p(source: str = "u-1", target: str = "u-2", amount: int = 100) -> dict[str, Any]:
    return {
        "type": "P2P",
        "amount": amount,
        "currency": "THB",
        "from": {"kind": "user", "id": source},
        "to": {"kind": "user", "id": target},
    }


def code(response: Any) -> str:
    assert response.headers["content-type"] == "application/problem+json", response.text
    body = msgspec.json.decode(response.content)
    assert body["status"] == response.status_code
    return str(body["code"])


async def nothing_published(redis: Redis) -> bool:
    return int(await redis.xlen(INTENTS_KEY)) == 0


async def test_a_signed_request_is_accepted(gateway: Gateway, redis: Redis) -> None:
    response = await gateway.send("POST", "/v1/intents", p2p(), headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 202, response.text
    assert await redis.xlen(INTENTS_KEY) == 1


@pytest.mark.parametrize(
    "header", [signing.KEY_HEADER, signing.TIMESTAMP_HEADER, signing.NONCE_HEADER, signing.SIGNATURE_HEADER]
)
async def test_a_missing_header(gateway: Gateway, redis: Redis, header: str) -> None:
    signed = signing.headers(
        gateway.user.key_id, gateway.user.secret, "POST", "/v1/intents", msgspec.json.encode(p2p())
    )
    del signed[header]
    response = await gateway.send(
        "POST", "/v1/intents", p2p(), sign=False, headers={**signed, "Idempotency-Key": "k-1"}
    )
    assert (response.status_code, code(response)) == (401, "auth_missing_header")
    assert await nothing_published(redis)


async def test_an_unknown_key(gateway: Gateway, redis: Redis) -> None:
    ghost = Key("pk_" + "f" * 24, "whatever")  # (pk_000… is the front door's key, which exists)
    response = await gateway.send("POST", "/v1/intents", p2p(), key=ghost, headers={"Idempotency-Key": "k"})
    assert (response.status_code, code(response)) == (401, "auth_unknown_key")
    assert await nothing_published(redis)


async def test_an_inactive_key(gateway: Gateway, redis: Redis) -> None:
    key = await gateway.key(Permissions(operations=frozenset({"P2P"}), owners=None))
    pool = await db.create_pool(gateway.settings.database_url, max_size=1)
    async with pool.acquire() as conn:
        await deactivate_key(conn, key.key_id)
    await pool.close()
    response = await gateway.send("POST", "/v1/intents", p2p(), key=key, headers={"Idempotency-Key": "k"})
    assert (response.status_code, code(response)) == (401, "auth_inactive_key")
    assert await nothing_published(redis)


async def test_the_previous_secret_works_within_the_grace_period_only(gateway: Gateway) -> None:
    key = await gateway.key(Permissions(operations=frozenset({"P2P"}), owners=None))
    pool = await db.create_pool(gateway.settings.database_url, max_size=1)
    async with pool.acquire() as conn:
        _, new_secret = await rotate_key(conn, gateway.cipher, key.key_id, grace_s=1.0)
    await pool.close()
    old, new = key, Key(key.key_id, new_secret)
    assert (await gateway.send("GET", "/v1/intents", key=old)).status_code == 200
    assert (await gateway.send("GET", "/v1/intents", key=new)).status_code == 200
    await asyncio.sleep(1.2)
    response = await gateway.send("GET", "/v1/intents", key=old)
    assert (response.status_code, code(response)) == (401, "auth_expired_secret")
    wrong = await gateway.send("GET", "/v1/intents", key=Key(key.key_id, "never-issued"))
    assert (wrong.status_code, code(wrong)) == (401, "auth_bad_signature")
    assert (await gateway.send("GET", "/v1/intents", key=new)).status_code == 200


@pytest.mark.parametrize("offset", [-330, 330])  # well past the 300 s window, however slow the run
async def test_a_timestamp_out_of_the_window(gateway: Gateway, redis: Redis, offset: int) -> None:
    body = msgspec.json.encode(p2p())
    timestamp, nonce = str(int(time.time()) + offset), "n-skew"
    signature = signing.sign(gateway.user.secret, timestamp, nonce, "POST", "/v1/intents", body)
    headers = {
        signing.KEY_HEADER: gateway.user.key_id,
        signing.TIMESTAMP_HEADER: timestamp,
        signing.NONCE_HEADER: nonce,
        signing.SIGNATURE_HEADER: signature,
        "Idempotency-Key": "k",
    }
    response = await gateway.send("POST", "/v1/intents", body, sign=False, headers=headers)
    assert (response.status_code, code(response)) == (401, "auth_timestamp_skew")
    assert await nothing_published(redis)


async def test_a_nonce_set_resent_after_a_lost_reply_is_still_fresh(redis: Redis) -> None:
    # redis-py sends a command again when the connection drops before its reply (a Redis restart):
    # the SET took the first time, and the same request must not then be refused as a replay.
    key = f"pm:nonce:test:{uuid.uuid4().hex}"
    mine, theirs = b"token-of-this-request", b"token-of-another-request"
    calls = Pipelined(redis)
    try:
        assert await claim_nonce(calls, key, mine)
        assert await claim_nonce(calls, key, mine)  # the resent SET finds its own token
        assert not await claim_nonce(calls, key, theirs)  # another request with the nonce: a replay
        assert await redis.get(key) == mine
        assert 0 < await redis.ttl(key) <= signing.NONCE_TTL_S
    finally:
        await redis.delete(key)


async def test_a_replayed_nonce(gateway: Gateway, redis: Redis) -> None:
    body = msgspec.json.encode(p2p())
    headers = {
        **signing.headers(gateway.user.key_id, gateway.user.secret, "POST", "/v1/intents", body),
        "Idempotency-Key": "k-replay",
    }
    first = await gateway.send("POST", "/v1/intents", body, sign=False, headers=headers)
    assert first.status_code == 202
    again = await gateway.send("POST", "/v1/intents", body, sign=False, headers=headers)
    assert (again.status_code, code(again)) == (401, "auth_replayed_nonce")
    assert await redis.xlen(INTENTS_KEY) == 1


async def test_a_body_changed_after_signing(gateway: Gateway, redis: Redis) -> None:
    signed = signing.headers(
        gateway.user.key_id, gateway.user.secret, "POST", "/v1/intents", msgspec.json.encode(p2p())
    )
    response = await gateway.send(
        "POST", "/v1/intents", p2p(amount=999_999), sign=False, headers={**signed, "Idempotency-Key": "k"}
    )
    assert (response.status_code, code(response)) == (401, "auth_bad_signature")
    assert await nothing_published(redis)


@pytest.mark.parametrize(
    ("method", "path"), [("POST", "/v1/wallets"), ("PUT", "/v1/intents"), ("POST", "/v1/intents?x=1")]
)
async def test_a_signature_for_another_method_or_path(
    gateway: Gateway, redis: Redis, method: str, path: str
) -> None:
    body = msgspec.json.encode(p2p())
    signed = signing.headers(gateway.user.key_id, gateway.user.secret, method, path, body)
    response = await gateway.send(
        "POST", "/v1/intents", body, sign=False, headers={**signed, "Idempotency-Key": "k"}
    )
    assert (response.status_code, code(response)) == (401, "auth_bad_signature")
    assert await nothing_published(redis)


async def test_an_operation_outside_the_keys_permissions(gateway: Gateway, redis: Redis) -> None:
    key = await gateway.key(Permissions(operations=frozenset({"SBP_TOPUP"}), owners=None))
    response = await gateway.send("POST", "/v1/intents", p2p(), key=key, headers={"Idempotency-Key": "k"})
    assert (response.status_code, code(response)) == (403, "forbidden_operation")
    adjustment = {**p2p(), "type": "ADJUSTMENT", "from": {"kind": "operator"}}
    response = await gateway.send("POST", "/v1/intents", adjustment, headers={"Idempotency-Key": "k2"})
    assert (response.status_code, code(response)) == (403, "forbidden_operation")
    assert await nothing_published(redis)
    response = await gateway.send(
        "POST", "/v1/intents", adjustment, key=gateway.admin, headers={"Idempotency-Key": "k3"}
    )
    assert response.status_code == 202, response.text


async def test_an_owner_outside_the_keys_scope(gateway: Gateway, redis: Redis) -> None:
    key = await gateway.key(Permissions(operations=ALL_TYPES - {"ADJUSTMENT"}, owners=frozenset({"u-1"})))
    response = await gateway.send(
        "POST", "/v1/intents", p2p(source="u-9"), key=key, headers={"Idempotency-Key": "k"}
    )
    assert (response.status_code, code(response)) == (403, "forbidden_owner")
    assert await nothing_published(redis)
    # Acting for its own owner, it may pay anyone.
    response = await gateway.send(
        "POST", "/v1/intents", p2p(source="u-1", target="u-9"), key=key, headers={"Idempotency-Key": "k"}
    )
    assert response.status_code == 202, response.text
    wallet = await gateway.send("GET", "/v1/wallets/u-9", key=key)
    assert (wallet.status_code, code(wallet)) == (403, "forbidden_owner")


async def test_admin_routes_need_an_admin_key(gateway: Gateway) -> None:
    response = await gateway.send("GET", "/v1/admin/keys")
    assert (response.status_code, code(response)) == (403, "forbidden_admin")
    response = await gateway.send("GET", "/v1/admin/keys", key=gateway.admin)
    assert response.status_code == 200
    listed = msgspec.json.decode(response.content)
    assert gateway.user.key_id in {k["keyId"] for k in listed}
    assert all("secret" not in k for k in listed)
