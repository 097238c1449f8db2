"""Open-loop load on the gateway's intake: requests sent on a fixed schedule, whatever the answers.

A request goes out at its scheduled time whether or not earlier ones were answered (a 503 is
counted, not retried), so a slow gateway shows as latency and refusals, never as a lower offered rate.

The generator shares the machine's cores with the fleet, so it must cost little: it sends with one
aiohttp session (keep-alive connections, opened before the clock starts, more when all are busy).
With httpx, one client per connection, it used 0.42 of a core at 300 requests/s on a 2-core VM,
a fifth of everything the run used (docs/bench.md, "Saga").
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp
import msgspec

from pm_client import signing
from pm_tools.bench.services import INTAKE

CLIENTS = 32
"""Connections opened before the clock starts."""
REQUEST_TIMEOUT_S = 30.0


@dataclass
class Sent:
    """One request: when it was due, sent and answered (epoch s), and what came back."""

    scheduled: float
    sent: float = 0.0
    answered: float = 0.0
    status: int | None = None
    intent_id: str | None = None
    error: str | None = None


class _Created(msgspec.Struct):
    id: str


_created = msgspec.json.Decoder(_Created)


class _Sender:
    """Signs and posts intents on one session of keep-alive connections (no cookies, no proxy)."""

    def __init__(self, base: str, key: tuple[str, str]) -> None:
        self.url = base.rstrip("/") + INTAKE
        self.key = key
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=None),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
            trust_env=False,
        )

    async def connect(self) -> None:
        """Open `CLIENTS` connections at once (each request in flight holds one, so all are opened)."""
        readyz = self.url.removesuffix(INTAKE) + "/readyz"

        async def ready() -> None:
            async with self.session.get(readyz) as response:
                await response.read()

        await asyncio.gather(*(ready() for _ in range(CLIENTS)))

    async def send(self, record: Sent, body: bytes) -> None:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": secrets.token_hex(16),
            **signing.headers(*self.key, "POST", INTAKE, body),
        }
        record.sent = time.time()
        try:
            async with self.session.post(self.url, data=body, headers=headers) as response:
                content = await response.read()
                record.status = response.status
                if response.status == 202:
                    record.intent_id = _created.decode(content).id
                elif response.status != 503:
                    record.error = f"{response.status} {content[:300].decode(errors='replace')}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            record.error = repr(exc)
        record.answered = time.time()

    async def aclose(self) -> None:
        await self.session.close()


async def offer(base: str, key: tuple[str, str], bodies: Sequence[bytes], rate: float) -> list[Sent]:
    """Post each of `bodies` to the gateway at `base`, signed with `key` (key id, secret), on a fixed
    schedule (`rate`/s), never waiting for answers first; connections are opened before the clock
    starts."""
    sender = _Sender(base, key)
    records: list[Sent] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await sender.connect()
        clock0, wall0 = time.perf_counter(), time.time()
        for n, body in enumerate(bodies):
            delay = clock0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = Sent(scheduled=wall0 + n / rate)
            records.append(record)
            tasks.append(asyncio.create_task(sender.send(record, body)))
        await asyncio.gather(*tasks)
    finally:
        await sender.aclose()
    return records
