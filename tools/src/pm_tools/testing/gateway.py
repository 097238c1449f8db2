"""A real gateway for the tests: the app under uvicorn on a free port, in the test's event loop, on the
test Redis database (`PM_TEST_REDIS_DB`) and the session's migrated PostgreSQL database, with real
service keys.

Test support only (it imports pytest, a development dependency); the tests' conftest exposes the
`gateway` fixture.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import msgspec
import pytest
import uvicorn
from redis.asyncio import Redis

from pm_client import signing
from pm_client.api import INTENT_TYPES, MINIAPP_TYPES
from pm_gateway.app import UNDECLARED, create_app
from pm_gateway.main import http_config
from pm_gateway.settings import Settings
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.settings import load_settings
from pm_shared.streams.names import EVENTS, INTENTS, LEDGER_COMMANDS, LEDGER_RESULTS
from pm_shared.streams.provision import provision
from pm_tools.devenv.envfile import new_key_encryption_key

PROXY_SECRET = "test-proxy-secret-of-32-characters-or-more"
"""What the test gateway expects from the front door on `/v1/me` (nginx adds it in a deployment)."""
ALL_TYPES = frozenset(INTENT_TYPES) - MINIAPP_TYPES
"""What a key that is not a merchant's may create (MINIAPP_* need a merchant's key)."""


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: str


@dataclass
class Gateway:
    url: str
    settings: Settings
    cipher: Cipher
    admin: Key
    user: Key
    """May create P2P, PROMPTPAY_WITHDRAWAL and SBP_TOPUP intents for any owner."""
    http: httpx.AsyncClient

    async def key(self, permissions: Permissions) -> Key:
        pool = await db.create_pool(self.settings.database_url, max_size=1)
        try:
            async with pool.acquire() as conn:
                made, secret = await create_key(conn, self.cipher, permissions=permissions)
        finally:
            await pool.close()
        return Key(made.key_id, secret)

    async def send(
        self,
        method: str,
        path: str,
        body: object | bytes | None = None,
        *,
        key: Key | None = None,
        headers: dict[str, str] | None = None,
        sign: bool = True,
    ) -> httpx.Response:
        """A request signed with `key` (the user key by default); `headers` override the signed ones."""
        key = key or self.user
        content = body if isinstance(body, bytes) else b"" if body is None else msgspec.json.encode(body)
        sent = signing.headers(key.key_id, key.secret, method, path, content) if sign else {}
        if content:
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        return await self.http.request(method, self.url + path, content=content, headers=sent)


def undeclared_problems() -> float:
    """How many problems the gateways of this process answered that their operation does not declare."""
    return sum(s.value for m in UNDECLARED.collect() for s in m.samples if s.name.endswith("_total"))


def key_encryption_key() -> str:
    return os.environ.get("PM_KEY_ENCRYPTION_KEY") or new_key_encryption_key()


async def delete_streams(redis: Redis, *names: str) -> None:
    for name in names:
        keys = [k async for k in redis.scan_iter(match=f"{{{name}:*")]
        if keys:
            await redis.delete(*keys)


@pytest.fixture
def gateway_env() -> dict[str, str]:
    """More `PM_*` settings for the `gateway` fixture: a test module overrides this fixture to run
    its gateway otherwise configured (a short quote TTL, say)."""
    return {}


@pytest.fixture
async def gateway(
    redis: Redis, redis_url: str, database_url: str, gateway_env: dict[str, str]
) -> AsyncIterator[Gateway]:
    streams = [INTENTS, EVENTS, LEDGER_COMMANDS, LEDGER_RESULTS]
    await delete_streams(redis, *(s.name for s in streams))
    await provision(redis, 1, streams)
    settings = load_settings(
        Settings,
        "GATEWAY_",
        {
            "PM_REDIS_URL": redis_url,
            "PM_DATABASE_URL": database_url,
            "PM_KEY_ENCRYPTION_KEY": key_encryption_key(),
            "PM_GATEWAY_KEY_CACHE_S": "0",
            "PM_GATEWAY_WALLET_OPEN_WAIT_S": "0.5",
            "PM_GATEWAY_PROXY_SECRET": PROXY_SECRET,
            **gateway_env,
        },
    )
    cipher = Cipher.from_setting(settings.key_encryption_key)
    server = uvicorn.Server(http_config(create_app(settings), "127.0.0.1", 0))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(timeout=40) as http:
        gw = Gateway(f"http://127.0.0.1:{port}", settings, cipher, Key("", ""), Key("", ""), http)
        gw.admin = await gw.key(Permissions(operations=ALL_TYPES, owners=None, admin=True))
        gw.user = await gw.key(Permissions(operations=ALL_TYPES - {"ADJUSTMENT"}, owners=None))
        undeclared = undeclared_problems()
        try:
            yield gw
        finally:
            server.should_exit = True
            await serving
            await delete_streams(redis, *(s.name for s in streams))
        assert undeclared_problems() == undeclared, (
            "the gateway answered a problem its contract (GET /openapi.json) does not declare; see the log"
        )
