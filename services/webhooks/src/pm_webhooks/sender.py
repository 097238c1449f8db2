"""One attempt: check where the endpoint's URL goes, sign the body with the secrets in force, POST it,
and say what came back. Nothing here writes to the database (`records` does).

Success is a 2xx answer and nothing else; a redirect is a failure and is never followed (the client
has `follow_redirects=False`); 410 Gone asks for the endpoint to be disabled. The whole attempt
(resolution, connection, request and the answer's first bytes) is bounded by the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import httpx

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
    def __init__(self, client: httpx.AsyncClient, networks: Sequence[Network], timeout_s: float) -> None:
        self.client = client
        self.networks = tuple(networks)
        self.timeout_s = timeout_s

    async def attempt(self, message: Message) -> Outcome:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s):
                target = await addresses.check(message.url, self.networks)
                outcome = await self._post(target, message)
        except addresses.AddressNotAllowedError as exc:
            return Outcome("refused", error=exc.error, excerpt=exc.detail[:EXCERPT_CHARS])
        except TimeoutError:
            outcome = Outcome("error", error="timeout")
        except httpx.TimeoutException:
            outcome = Outcome("error", error="timeout")
        except httpx.HTTPError as exc:
            outcome = Outcome("error", error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])
        latency = int((time.monotonic() - started) * 1000)
        return Outcome(
            outcome.kind, outcome.status_code, outcome.error, latency, outcome.excerpt, outcome.retry_after
        )

    async def _post(self, target: addresses.Target, message: Message) -> Outcome:
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "host": target.host_header,
            **signing.headers(message.secrets, message.webhook_id, int(time.time()), message.body),
        }
        extensions = {"sni_hostname": target.server_name} if target.url.scheme == "https" else {}
        request = self.client.build_request(
            "POST", target.url, content=message.body, headers=headers, extensions=extensions
        )
        response = await self.client.send(request, stream=True)
        try:
            excerpt = await _excerpt(response)
        finally:
            await response.aclose()
        return Outcome(
            kind_of(response.status_code),
            status_code=response.status_code,
            excerpt=excerpt,
            retry_after=response.headers.get("retry-after"),
        )


async def _excerpt(response: httpx.Response) -> str:
    data = b""
    async for chunk in response.aiter_bytes():
        data += chunk
        if len(data) >= EXCERPT_BYTES:
            break
    return data.decode(response.encoding or "utf-8", errors="replace")[:EXCERPT_CHARS]
