"""pm_shared.pipelined on real Redis: concurrent callers' commands go out together, in the order they
were queued, and each caller gets its own reply or its own error."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from pm_shared.pipelined import Pipelined
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


def _pusher(script: AsyncScript, key: str, value: str) -> Callable[[Pipeline], object]:
    return lambda pipe: script(keys=[key], args=[value], client=pipe)


def _rpush(key: str, value: str) -> Callable[[Pipeline], object]:
    return lambda pipe: pipe.rpush(key, value)


def _key() -> str:
    return f"{{test:pipelined}}:{secrets.token_hex(4)}"


async def test_concurrent_calls_share_a_connection_and_keep_their_order(redis_url: str) -> None:
    name = f"pipelined-{secrets.token_hex(4)}"
    client = connect(redis_url, name=name)
    key = _key()
    try:
        calls = Pipelined(client)
        script = client.register_script(SCRIPT)
        replies = await asyncio.gather(*(calls(_pusher(script, key, f"v{n}")) for n in range(50)))

        assert replies == list(range(1, 51))  # each caller its own reply, in the order of the calls
        assert await client.lrange(key, 0, -1) == [f"v{n}".encode() for n in range(50)]
        # Fifty calls at once through one pipeline: one connection, where separate calls take fifty.
        assert await _connections(client, name) == 1
    finally:
        await client.delete(key)
        await client.aclose()


async def test_plain_commands_and_scripts_mix_in_one_round(redis_url: str) -> None:
    client = connect(redis_url)
    key, other = _key(), _key()
    try:
        calls = Pipelined(client)
        script = client.register_script(SCRIPT)
        first, claimed, again, pushed = await asyncio.gather(
            calls(lambda pipe: pipe.set(other, b"mine", nx=True, get=True)),
            calls(lambda pipe: pipe.get(other)),
            calls(lambda pipe: pipe.set(other, b"theirs", nx=True, get=True)),
            calls(lambda pipe: script(keys=[key], args=["x"], client=pipe)),
        )

        assert (first, claimed, again, pushed) == (None, b"mine", b"mine", 1)
    finally:
        await client.delete(key, other)
        await client.aclose()


async def test_an_error_reaches_only_the_call_that_made_it(redis_url: str) -> None:
    client = connect(redis_url)
    key = _key()
    try:
        calls = Pipelined(client)
        script = client.register_script(SCRIPT)
        outcomes = await asyncio.gather(
            calls(lambda pipe: script(keys=[key], args=["a"], client=pipe)),
            calls(lambda pipe: script(keys=[key], args=["boom"], client=pipe)),
            calls(lambda pipe: script(keys=[key], args=["b"], client=pipe)),
            return_exceptions=True,
        )

        assert outcomes[0] == 1 and outcomes[2] == 2
        assert isinstance(outcomes[1], ResponseError) and "boom" in str(outcomes[1])
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_lone_call_and_a_later_round_each_get_their_reply(redis_url: str) -> None:
    client = connect(redis_url)
    key = _key()
    try:
        calls = Pipelined(client)
        assert await calls(lambda pipe: pipe.rpush(key, "first")) == 1
        later = await asyncio.gather(
            calls(lambda pipe: pipe.rpush(key, "x")), calls(lambda pipe: pipe.rpush(key, "y"))
        )
        assert list(later) == [2, 3]
    finally:
        await client.delete(key)
        await client.aclose()


async def test_a_server_that_cannot_be_reached_fails_every_call_of_the_round() -> None:
    client = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)  # nothing listens on port 1
    try:
        calls = Pipelined(client)
        outcomes = await asyncio.gather(
            *(calls(_rpush("k", str(n))) for n in range(3)), return_exceptions=True
        )

        assert all(isinstance(o, Exception) for o in outcomes)
    finally:
        await client.aclose()
