"""Open-loop load on the gateway's intake: requests sent on a fixed schedule, whatever the answers.

A request goes out at its scheduled time whether or not earlier ones were answered (a 503 is
counted, not retried), so a slow gateway shows as latency and refusals, never as a lower offered rate.
"""

from __future__ import annotations

import asyncio
import secrets
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import msgspec

from pm_client.client import PMAuth
from pm_tools.bench.services import INTAKE

CLIENTS = 32
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


class _Clients:
    """Clients with one keep-alive connection each, lent to one request at a time.

    One httpx client with a pool of many connections costs the generator far more CPU per request.
    `CLIENTS` are made up front, sharing one TLS context (httpx loads the CA bundle for each client
    it makes otherwise, about 10 ms of CPU each: made on demand, they starved the schedule); when
    every one is busy a request gets a new client rather than waiting.
    """

    def __init__(self, base: str, auth: PMAuth) -> None:
        self.base, self.auth = base, auth
        self.tls = ssl.create_default_context()
        self.made = [self._client() for _ in range(CLIENTS)]
        self.idle = list(self.made)

    def _client(self) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        return httpx.AsyncClient(
            base_url=self.base,
            auth=self.auth,
            limits=limits,
            timeout=REQUEST_TIMEOUT_S,
            trust_env=False,
            verify=self.tls,
        )

    async def connect(self) -> None:
        await asyncio.gather(*(client.get("/readyz") for client in self.made))

    async def send(self, record: Sent, body: bytes) -> None:
        if self.idle:
            client = self.idle.pop()
        else:
            client = self._client()
            self.made.append(client)
        headers = {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}
        record.sent = time.time()
        try:
            response = await client.post(INTAKE, content=body, headers=headers)
            record.status = response.status_code
            if response.status_code == 202:
                record.intent_id = _created.decode(response.content).id
            elif response.status_code != 503:
                record.error = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as exc:
            record.error = repr(exc)
        record.answered = time.time()
        self.idle.append(client)

    async def aclose(self) -> None:
        for client in self.made:
            await client.aclose()


async def offer(base: str, auth: PMAuth, bodies: Sequence[bytes], rate: float) -> list[Sent]:
    """Post each of `bodies` to the gateway at `base` on a fixed schedule (`rate`/s), never waiting
    for answers first; the clients are connected before the clock starts."""
    clients = _Clients(base, auth)
    records: list[Sent] = []
    tasks: list[asyncio.Task[None]] = []
    try:
        await clients.connect()
        clock0, wall0 = time.perf_counter(), time.time()
        for n, body in enumerate(bodies):
            delay = clock0 + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            record = Sent(scheduled=wall0 + n / rate)
            records.append(record)
            tasks.append(asyncio.create_task(clients.send(record, body)))
        await asyncio.gather(*tasks)
    finally:
        await clients.aclose()
    return records
