"""One attempt: check where the endpoint's URL goes, sign the body with the secrets in force, POST it,
and say what came back. Nothing here writes to the database (`records` does).

Success is a 2xx answer and nothing else; a redirect is a failure and is never followed
(`allow_redirects=False`); 410 Gone asks for the endpoint to be disabled. The whole attempt (resolution,
connection, request and the answer's first bytes) is bounded by the request timeout.

The client is aiohttp's: under `pm bench --webhooks` on two cores it posted about 6,000 requests/s
where httpx managed about 250/s (httpx walks every pooled connection, polling each idle socket, for
every request; docs/bench.md#merchant-webhooks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import aiohttp

from pm_shared.webhooks import signing
from pm_webhooks import addresses
from pm_webhooks.settings import Network

Kind = Literal["delivered", "gone", "redirect", "rejected", "error", "refused"]

EXCERPT_CHARS = 1_000
# Read at most this much of an answer: enough for the excerpt in any encoding, never a whole large body.
EXCERPT_BYTES = 4 * EXCERPT_CHARS
USER_AGENT = "pm-webhooks/1 (Standard Webhooks)"


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    status_code: int | None = None
    error: str | None = None
    latency_ms: int = 0
    excerpt: str | None = None
    retry_after: str | None = None
    """The answer's `Retry-After` header, as sent."""

    @property
    def ok(self) -> bool:
        return self.kind == "delivered"


def kind_of(status: int) -> Kind:
    if 200 <= status < 300:
        return "delivered"
    if status == 410:
        return "gone"
    if 300 <= status < 400:
        return "redirect"
    return "rejected"


@dataclass(frozen=True)
class Message:
    """What one attempt sends."""

    url: str
    webhook_id: str
    body: bytes
    secrets: Sequence[bytes]
    """The current secret first, then the previous one while a rotation lets it sign."""


class Sender:
    def __init__(self, client: aiohttp.ClientSession, networks: Sequence[Network], timeout_s: float) -> None:
        self.client = client
        self.networks = tuple(networks)
        self.timeout_s = timeout_s

    async def attempt(self, message: Message) -> Outcome:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                target = await addresses.check(message.url, self.networks)
                outcome = await self.post(target, message)
        except addresses.AddressNotAllowedError as exc:
            return Outcome("refused", error=exc.error, excerpt=exc.detail[:EXCERPT_CHARS])
        except TimeoutError:  # aiohttp's own timeouts are TimeoutErrors too
            outcome = Outcome("error", error="timeout")
        except aiohttp.ClientError as exc:
            outcome = Outcome("error", error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(
            outcome.kind, outcome.status_code, outcome.error, latency, outcome.excerpt, outcome.retry_after
        )

    async def post(self, target: addresses.Target, message: Message) -> Outcome:
        """POST to a target already checked (`attempt` checks it first); errors are raised."""
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host_header,
            **signing.headers(message.secrets, message.webhook_id, int(time.time()), message.body),
        }
        # https: the certificate is checked against the URL's host, not the address connected to; the
        # server name is part of aiohttp's pool key, so a connection is never reused for another host.
        server_name = target.server_name if target.url.scheme == "https" else None
        async with self.client.post(
            target.url,
            data=message.body,
            headers=headers,
            allow_redirects=False,
            server_hostname=server_name,
        ) as response:
            excerpt = await _excerpt(response)
        return Outcome(
            kind_of(response.status),
            status_code=response.status,
            excerpt=excerpt,
            retry_after=response.headers.get("retry-after"),
        )


async def _excerpt(response: aiohttp.ClientResponse) -> str:
    """The answer's first bytes as text; the rest is never read (the connection is then closed)."""
    data = b""
    while len(data) < EXCERPT_BYTES:
        chunk = await response.content.read(EXCERPT_BYTES - len(data))
        if not chunk:
            break
        data += chunk
    return data.decode(response.charset or "utf-8", errors="replace")[:EXCERPT_CHARS]
