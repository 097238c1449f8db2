"""A backing service that does not answer is a 503 problem with Retry-After, never a 500."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
import pytest
import uvicorn
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pm_client.client import PMAuth
from pm_gateway.app import _endpoint, create_app
from pm_gateway.endpoints import Endpoint
from pm_gateway.settings import Settings
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.settings import load_settings
from pm_tools.processes import free_port
from pm_tools.testing.gateway import Gateway, key_encryption_key


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


def _raising(exc: BaseException) -> Endpoint:
    async def handler(request: Request) -> Response:
        raise exc

    return Endpoint("POST", "/v1/intents", handler, "raises")


async def _answer(exc: BaseException) -> tuple[int, dict[str, str], dict[str, object]]:
    app = Starlette(routes=[Route("/v1/intents", _endpoint(_raising(exc), 1024), methods=["POST"])])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        response = await http.post("/v1/intents")
    return response.status_code, dict(response.headers), response.json()


@pytest.mark.parametrize(
    "exc",
    [
        asyncpg.CannotConnectNowError("the database system is shutting down"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        # What a pooled connection that got the server's FATAL while idle raises (seen in chaos runs
        # during a PostgreSQL restart).
        asyncpg.InternalClientError("cannot switch to state 12; another operation (2) is in progress"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        ConnectionRefusedError(111, "Connect call failed"),
        RedisConnectionError("Connection closed by server."),
        BusyLoadingError("Redis is loading the dataset in memory"),
    ],
    ids=type,
)
async def test_a_backing_service_going_away_mid_request_is_503_unavailable(exc: BaseException) -> None:
    status, headers, body = await _answer(exc)
    assert status == 503, body
    assert headers["retry-after"] == "1"
    assert body["code"] == "unavailable"


async def test_a_bug_is_500_internal_error_not_503() -> None:
    status, _, body = await _answer(KeyError("a bug"))
    assert status == 500
    assert body["code"] == "internal_error"


async def test_a_query_cut_by_a_postgresql_shutdown_is_503_and_the_next_request_is_answered(
    gateway: Gateway, database_url: str
) -> None:
    # The gateway's listing waits on a lock held here; its backend is then terminated the way a
    # PostgreSQL shutdown or restart ends every session (FATAL 57P01 admin_shutdown mid-query, which
    # asyncpg raises as ConnectionDoesNotExistError "connection was closed in the middle of operation").
    locker = await db.connect(database_url)
    try:
        async with locker.transaction():
            await locker.execute("LOCK TABLE pm.intent IN ACCESS EXCLUSIVE MODE")
            listing = asyncio.create_task(gateway.send("GET", "/v1/intents"))
            waiting: list[int] = []
            for _ in range(500):
                waiting = [
                    r["pid"]
                    for r in await locker.fetch(
                        "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                    )
                ]
                if waiting or listing.done():
                    break
                await asyncio.sleep(0.01)
            assert waiting, "the gateway's query never waited on the lock"
            for pid in waiting:
                await locker.fetchval("SELECT pg_terminate_backend($1)", pid)
            response = await listing
    finally:
        await locker.close()
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    assert response.json()["code"] == "unavailable"
    again = await gateway.send("GET", "/v1/intents")
    assert again.status_code == 200, again.text
