"""pm_orchestrator.limits.coalesce on real Redis: concurrent calls of a script go out together, in
the order they were made, and each caller gets its own reply or its own error."""

from __future__ import annotations

import asyncio
import secrets

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from pm_orchestrator.limits.coalesce import Coalesced
from pm_shared.streams.connection import connect

# Appends ARGV[1] to a list and answers the list's length; ARGV[1] == "boom" raises in the script.
SCRIPT = """
if ARGV[1] == 'boom' then
  return redis.error_reply('boom')
end
return redis.call('RPUSH', KEYS[1], ARGV[1])
"""


async def _connections(redis: Redis, name: str) -> int:
    return sum(1 for c in await redis.client_list() if c.get("name") == name)


async def test_concurrent_calls_share_a_connection_and_keep_their_order(redis_url: str) -> None:
    name = f"coalesce-{secrets.token_hex(4)}"
    client = connect(redis_url, name=name)
    key = f"{{test:coalesce}}:{secrets.token_hex(4)}"
    try:
        calls = Coalesced(client, client.register_script(SCRIPT))
        replies = await asyncio.gather(*(calls(keys=[key], args=[f"v{n}"]) for n in range(50)))

        assert replies == list(range(1, 51))  # each caller its own reply, in the order of the calls
        assert await client.lrange(key, 0, -1) == [f"v{n}".encode() for n in range(50)]
        # Fifty calls at once through one pipeline: one connection, where separate calls take fifty.
        assert await _connections(client, name) == 1
    finally:
        await client.delete(key)
        await client.aclose()


async def test_an_error_reaches_only_the_call_that_made_it(redis_url: str) -> None:
    client = connect(redis_url)
    key = f"{{test:coalesce}}:{secrets.token_hex(4)}"
    try:
        calls = Coalesced(client, client.register_script(SCRIPT))
        outcomes = await asyncio.gather(
            calls(keys=[key], args=["a"]),
            calls(keys=[key], args=["boom"]),
            calls(keys=[key], args=["b"]),
            return_exceptions=True,
        )

        assert outcomes[0] == 1 and outcomes[2] == 2
        assert isinstance(outcomes[1], ResponseError) and "boom" in str(outcomes[1])
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_lone_call_and_a_later_round_each_get_their_reply(redis_url: str) -> None:
    client = connect(redis_url)
    key = f"{{test:coalesce}}:{secrets.token_hex(4)}"
    try:
        calls = Coalesced(client, client.register_script(SCRIPT))
        assert await calls(keys=[key], args=["first"]) == 1
        assert list(await asyncio.gather(calls(keys=[key], args=["x"]), calls(keys=[key], args=["y"]))) == [
            2,
            3,
        ]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_server_that_cannot_be_reached_fails_every_call_of_the_round() -> None:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    try:
        calls = Coalesced(client, client.register_script(SCRIPT))
        outcomes = await asyncio.gather(
            *(calls(keys=["k"], args=[str(n)]) for n in range(3)), return_exceptions=True
        )

        assert all(isinstance(o, Exception) for o in outcomes)
    finally:
        await client.aclose()
