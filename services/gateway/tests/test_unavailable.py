"""A backing service that does not answer is a 503 problem with Retry-After, never a 500."""

from __future__ import annotations

import asyncio

import httpx
import uvicorn

from pm_gateway.app import create_app
from pm_gateway.settings import Settings
from pm_gateway.testing import key_encryption_key
from pm_shared import db
from pm_shared.client import PMAuth
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.settings import load_settings
from pm_shared.testing.fleet import free_port


async def test_a_request_meeting_an_unreachable_redis_gets_503_unavailable(database_url: str) -> None:
    # Nothing listens on this port: the nonce check (the first Redis command of a request) fails.
    settings = load_settings(
        Settings,
        "GATEWAY_",
        {
            "PM_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "PM_DATABASE_URL": database_url,
            "PM_KEY_ENCRYPTION_KEY": key_encryption_key(),
        },
    )
    pool = await db.create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            key, secret = await create_key(
                conn,
                Cipher.from_setting(settings.key_encryption_key),
                permissions=Permissions(frozenset({"P2P"}), None),
            )
    finally:
        await pool.close()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if serving.done():
                serving.result()
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        async with httpx.AsyncClient(auth=PMAuth(key.key_id, secret), timeout=30) as http:
            response = await http.get(f"http://127.0.0.1:{port}/v1/intents")
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "1"
        assert response.headers["content-type"].startswith("application/problem+json")
        assert response.json()["code"] == "unavailable"
    finally:
        server.should_exit = True
        await serving
