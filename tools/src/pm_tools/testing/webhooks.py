"""Test kit for merchant webhooks: a real HTTP receiver on loopback that records what it is sent, and
endpoints inserted straight into `pm.webhook_endpoint` (as the admin API stores them).

The receiver is plain asyncio (one request per connection, `Connection: close`): each request is
recorded, then answered as the test's `answer` says — it may sleep first (a slow merchant), answer a
redirect, 410, 503 with `Retry-After`… `close()` stops listening (a merchant that is down) and
`reopen()` listens on the same port again. Given an `ssl` context, it speaks https.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import ssl as tls
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import msgspec

from pm_shared.db import Conn
from pm_shared.keys.crypto import Cipher
from pm_shared.merchants import store as merchants
from pm_shared.messages import IntentStateChanged, now
from pm_shared.webhooks import signing

Publish = Callable[[IntentStateChanged], Awaitable[None]]
"""The `publish` fixture of pm-webhooks's tests: put a state change on `pm:events`."""
StartSender = Callable[..., Awaitable[Any]]
"""The `start_sender` fixture of pm-webhooks's tests: a sender in the test's process, ready."""


@dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    """Lower-cased names."""
    body: bytes
    at: float
    """`time.monotonic()` when it was read."""

    @property
    def webhook_id(self) -> str:
        return self.headers.get("webhook-id", "")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay_s: float = 0.0


AnswerFn = Callable[[Received], Answer | Awaitable[Answer]]

REASONS = {200: "OK", 204: "No Content", 301: "Moved", 302: "Found", 307: "Temporary Redirect"}


class Receiver:
    """An HTTP server on 127.0.0.1 recording every request (`received`) and answering by `answer`."""

    def __init__(self, answer: AnswerFn | None = None, ssl: tls.SSLContext | None = None) -> None:
        self.answer: AnswerFn = answer or (lambda _: Answer())
        self.ssl = ssl
        self.received: list[Received] = []
        self.answered = 0
        """Requests answered (their answer written): `len(received) - answered` are in hand."""
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}/hook"

    async def __aenter__(self) -> Receiver:
        await self.reopen()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def reopen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, ssl=self.ssl
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        """Stop listening and drop the requests in hand (their senders see the connection cut)."""
        if self._server is not None:
            self._server.close()
            for task in list(self._handlers):
                task.cancel()
            await asyncio.gather(*self._handlers, return_exceptions=True)
            await self._server.wait_closed()
            self._server = None

    def ids(self) -> Counter[str]:
        """How many times each `webhook-id` arrived."""
        return Counter(r.webhook_id for r in self.received)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            received = await _read(reader)
            self.received.append(received)
            answer = self.answer(received)
            if inspect.isawaitable(answer):
                answer = await answer
            if answer.delay_s:
                await asyncio.sleep(answer.delay_s)
            writer.write(_reply(answer))
            await writer.drain()
            self.answered += 1
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()


async def _read(reader: asyncio.StreamReader) -> Received:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    _, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return Received(path, headers, body, time.monotonic())


def _reply(answer: Answer) -> bytes:
    headers = {"content-length": str(len(answer.body)), "connection": "close", **answer.headers}
    head = f"HTTP/1.1 {answer.status} {REASONS.get(answer.status, 'Status')}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return (head + "\r\n").encode("latin-1") + answer.body


# -- endpoints (as the admin API stores them) --------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    endpoint_id: str
    merchant_id: str
    secret: str
    """`whsec_…`, as the merchant is shown it."""


async def merchant(conn: Conn, cipher: Cipher, merchant_id: str | None = None) -> str:
    """A new ACTIVE merchant (with its key); its id."""
    merchant_id = merchant_id or f"m-{secrets.token_hex(6)}"
    await merchants.onboard(
        conn,
        cipher,
        merchants.Onboarding(
            merchant_id=merchant_id,
            name=f"Merchant {merchant_id}",
            currencies=("THB",),
            created_by="webhook-tests",
            idempotency_key=merchant_id,
            request_hash=merchant_id.encode(),
        ),
    )
    return merchant_id


async def endpoint(
    conn: Conn,
    cipher: Cipher,
    merchant_id: str,
    url: str,
    event_types: list[str],
    *,
    previous: str | None = None,
    previous_until: datetime | None = None,
) -> Endpoint:
    """A new ENABLED endpoint with a fresh secret (and, during a rotation, the `previous` one)."""
    endpoint_id = f"ep_{secrets.token_hex(12)}"
    shown = signing.show(signing.new_secret())
    await conn.execute(
        """
        INSERT INTO pm.webhook_endpoint (endpoint_id, merchant_id, url, event_types, secret_encrypted,
            previous_secret_encrypted, previous_until, created_by, idempotency_key, request_hash)
        VALUES ($1, $2, $3, $4, $5, $6, $7, 'webhook-tests', $1, '\\x00')
        """,
        endpoint_id,
        merchant_id,
        url,
        event_types,
        cipher.encrypt(shown, key_id=endpoint_id),
        cipher.encrypt(previous, key_id=endpoint_id) if previous else None,
        previous_until,
    )
    return Endpoint(endpoint_id, merchant_id, shown)


# -- intents and their state changes ---------------------------------------------------------------


async def merchant_intent(
    conn: Conn,
    merchant_id: str,
    *,
    intent_type: str = "MINIAPP_CHARGE",
    state: str = "SETTLED",
    amount: int = 1_500,
    idempotency_key: str | None = None,
    original_intent_id: str | None = None,
) -> str:
    """A `pm.intent` row with the merchant as its party (a charge's target, else the source), in
    `state`, under the merchant's key; its id."""
    found = await merchants.get(conn, merchant_id)
    intent_id = str(uuid.uuid4())
    merchant_party = msgspec.json.encode({"kind": "merchant", "id": merchant_id}).decode()
    user_party = msgspec.json.encode({"kind": "user", "id": f"u-{intent_id[:8]}"}).decode()
    source, target = (
        (user_party, merchant_party) if intent_type == "MINIAPP_CHARGE" else (merchant_party, user_party)
    )
    await conn.execute(
        """
        INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, failure_code, amount,
            currency, source, target, miniapp_id, original_intent_id)
        VALUES ($1, $2, $3, '\\x00', $4, $5, $6, $7, 'THB', $8::jsonb, $9::jsonb, $10, $11)
        """,
        uuid.UUID(intent_id),
        found.key_id,
        idempotency_key or intent_id,
        intent_type,
        state,
        "declined" if state == "FAILED" else None,
        amount,
        source,
        target,
        "app-1" if intent_type.startswith("MINIAPP_") else None,
        uuid.UUID(original_intent_id) if original_intent_id else None,
    )
    return intent_id


def state_changed(intent_id: str, state: str, previous: str = "AUTHORIZED") -> IntentStateChanged:
    """The `pm:events` message of one state change, as the orchestrator makes it."""
    return IntentStateChanged(
        intent_id=intent_id,
        message_id=f"{intent_id}:state:{state}",
        produced_at=now(),
        state=state,
        previous=previous,
        failure_code="declined" if state == "FAILED" else None,
    )
