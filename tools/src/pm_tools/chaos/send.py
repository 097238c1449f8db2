"""The chaos run's traffic on the wire: every planned intent sent through the gateway until accepted.

Every request is signed and carries its own Idempotency-Key; a 503 or a connection error is sent
again with the SAME key (so a request that committed before its answer was lost is recognised, not
doubled), until a deadline. 503 `backpressure` answers are counted as back-pressure refusals. A 500,
or a 401 calling our single-use nonce replayed, is sent again too (the same key makes that safe) and
kept as a finding: a backing service that is away must be a 503, and a valid request is not refused.

Intents go as the plan says (`Planned.via`): POST /v1/intents with the admin key or the merchant's;
a charge is the merchant's payment request (its own Idempotency-Key), then the user's confirmation at
/v1/me (the front door's proxy secret and `X-PM-User`, as nginx sends them), whose answer is the
MINIAPP_CHARGE intent. A confirmation sent again finds the same intent: one per request. An exchange
asks its quote first (`POST /v1/fx/quotes`; a lost answer just means another quote, never used), then
makes the FX_EXCHANGE carrying it out, resent with the same key and the same quote: the run's quotes
live longer than a request's deadline (`PM_FX_QUOTE_TTL_S`), so a resend never finds its quote expired.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import msgspec

from pm_client import api as http_api
from pm_client import fx_api, merchant_api
from pm_client.client import PMAuth
from pm_tools.chaos.load import Planned, Shop

REQUEST_DEADLINE_S = 180.0
PROXY_SECRET_HEADER = "X-PM-Proxy-Secret"
USER_HEADER = "X-PM-User"


@dataclass
class Accepted:
    intent_id: str
    planned: Planned
    accepted_at: float
    """Wall-clock time of the answer that accepted it."""
    attempts: int


@dataclass
class LoadStats:
    accepted: list[Accepted] = field(default_factory=list)
    backpressure: int = 0
    """503 `backpressure` answers (each sent again with the same key)."""
    unavailable: int = 0
    """Other 503 answers (a backing service down: Redis or PostgreSQL restarting)."""
    connection_errors: int = 0
    """Requests without an answer (the gateway killed or restarting), sent again with the same key."""
    refused: list[str] = field(default_factory=list)
    """Planned intents the gateway refused outright (a 4xx or 500), or never accepted by the deadline."""
    retried: int = 0
    """Intents accepted only after more than one attempt."""
    server_errors: list[str] = field(default_factory=list)
    """Spurious refusals of a valid request: a 500 (or another 5xx but 503; the gateway promises 503
    when a backing service is away), or 401 `auth_replayed_nonce` for a nonce sent once. Each is sent
    again with the same key, as a careful client would, and kept as a finding."""


_ENCODER = msgspec.json.Encoder()


def client(base_url: str, key_id: str, secret: str, connections: int = 64) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        auth=PMAuth(key_id, secret),
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
    )


def _problem_code(response: httpx.Response) -> str:
    try:
        code = response.json().get("code")
    except ValueError:
        return ""
    return str(code) if code else ""


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(1.0, max(0.05, float(response.headers.get("Retry-After", "0.2"))))
    except ValueError:
        return 0.2


@dataclass(frozen=True)
class Senders:
    """Who sends what: the admin key, the merchant's key, and the front door's side of /v1/me."""

    admin: httpx.AsyncClient
    merchant: httpx.AsyncClient | None = None
    user: httpx.AsyncClient | None = None
    """The gateway with the front door's proxy secret; each request names its user (`X-PM-User`)."""

    def of(self, p: Planned) -> httpx.AsyncClient:
        """The client that makes `p` (the merchant's for its credits and payment requests)."""
        if p.via == "admin":
            return self.admin
        assert self.merchant is not None, f"{p.key}: a merchant's intent, and no merchant key"
        return self.merchant


@dataclass
class _Attempts:
    """One planned intent's requests, until one is answered as wanted: counted, and the answers that
    are not (503, no answer, a spurious 500) recorded in `stats` and sent again."""

    p: Planned
    stats: LoadStats
    rng: random.Random
    deadline: float
    count: int = 0

    async def send(
        self, http: httpx.AsyncClient, path: str, content: bytes, headers: dict[str, str]
    ) -> httpx.Response | None:
        """POST until a 2xx; None when refused outright or past the deadline (recorded as refused)."""
        stats, p = self.stats, self.p
        while time.monotonic() < self.deadline:
            self.count += 1
            try:
                response = await http.post(path, content=content, headers=headers)
            except httpx.TransportError:
                stats.connection_errors += 1
                await asyncio.sleep(0.2 + self.rng.random() * 0.3)
                continue
            if response.status_code in (200, 201, 202):
                return response
            if response.status_code == 503:
                if _problem_code(response) == "backpressure":
                    stats.backpressure += 1
                else:
                    stats.unavailable += 1
                await asyncio.sleep(_retry_after(response) * (0.5 + self.rng.random()))
                continue
            spurious = response.status_code >= 500 or (
                response.status_code == 401 and _problem_code(response) == "auth_replayed_nonce"
            )
            if not spurious:
                stats.refused.append(
                    f"{p.key} ({p.scenario}): {path} HTTP {response.status_code} {response.text[:300]}"
                )
                return None
            # A 500, or a nonce we used once called replayed (the gateway's SET NX of it retried after
            # a lost reply): nothing was accepted, and the same key makes sending again safe.
            request_id = response.headers.get("X-Request-Id", "?")
            stats.server_errors.append(
                f"{p.key} ({p.scenario}): HTTP {response.status_code} request {request_id} at "
                f"{time.strftime('%H:%M:%S')}: {response.text[:200]}"
            )
            await asyncio.sleep(0.3 + self.rng.random() * 0.3)
        stats.refused.append(f"{p.key} ({p.scenario}): not accepted within {REQUEST_DEADLINE_S:g}s")
        return None


def payment_request(body: http_api.CreateIntent) -> merchant_api.CreatePaymentRequest:
    """The merchant's request for the charge `body` (user → merchant) the user is to confirm."""
    assert isinstance(body.from_, http_api.UserParty) and body.miniapp_id is not None, body
    return merchant_api.CreatePaymentRequest(
        miniapp_id=body.miniapp_id,
        user_id=body.from_.id,
        amount=body.amount,
        currency=body.currency,
        description=body.comment or "",
    )


async def _charge(senders: Senders, attempts: _Attempts) -> httpx.Response | None:
    """The merchant asks, the user confirms: the confirmation's answer (the charge intent), or None."""
    p = attempts.p
    assert senders.user is not None, f"{p.key}: a charge, and no way to answer for its user"
    content = _ENCODER.encode(payment_request(p.body))
    asked = await attempts.send(senders.of(p), "/v1/payment-requests", content, {"Idempotency-Key": p.key})
    if asked is None:
        return None
    request_id = str(asked.json()["id"])
    user = payment_request(p.body).user_id
    path = f"/v1/me/payment-requests/{request_id}/confirm"
    return await attempts.send(senders.user, path, b"", {USER_HEADER: user})


async def _exchange(senders: Senders, attempts: _Attempts) -> httpx.Response | None:
    """The quote, then the exchange carrying it out: the exchange's answer, or None."""
    p = attempts.p
    assert p.quote is not None
    asked = await attempts.send(senders.of(p), "/v1/fx/quotes", _ENCODER.encode(p.quote), {})
    if asked is None:
        return None
    quote = msgspec.json.decode(asked.content, type=fx_api.Quote)
    body = msgspec.structs.replace(p.body, quote_id=quote.quote_id, amount=quote.sell.amount)
    return await attempts.send(
        senders.of(p), "/v1/intents", _ENCODER.encode(body), {"Idempotency-Key": p.key}
    )


async def submit(senders: Senders, p: Planned, stats: LoadStats, rng: random.Random) -> Accepted | None:
    """Make one planned intent until accepted (same keys every time); None when refused or past the
    deadline."""
    attempts = _Attempts(p, stats, rng, time.monotonic() + REQUEST_DEADLINE_S)
    if p.via == "charge":
        answered = await _charge(senders, attempts)
    elif p.quote is not None:
        answered = await _exchange(senders, attempts)
    else:
        content = _ENCODER.encode(p.body)
        answered = await attempts.send(senders.of(p), "/v1/intents", content, {"Idempotency-Key": p.key})
    if answered is None:
        return None
    if attempts.count > 1:
        stats.retried += 1
    return Accepted(str(answered.json()["id"]), p, time.time(), attempts.count)


async def send_all(
    senders: Senders,
    planned: list[Planned],
    concurrency: int,
    stats: LoadStats,
    seed: int,
    on_accept: Callable[[int], None] = lambda n: None,
    rate: float | None = None,
) -> None:
    """Send `planned` in order from `concurrency` workers, at most `rate` new intents a second (open
    loop: the n-th is not sent before n / rate seconds); `on_accept` hears the running accepted count."""
    queue = list(reversed(planned))
    began = time.monotonic()
    sent = 0

    async def worker(index: int) -> None:
        nonlocal sent
        rng = random.Random(seed * 1000 + index)
        while queue:
            p = queue.pop()
            if rate:
                due = began + sent / rate
                sent += 1
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            done = await submit(senders, p, stats, rng)
            if done is not None:
                stats.accepted.append(done)
                on_accept(len(stats.accepted))

    async with asyncio.TaskGroup() as tasks:
        for index in range(min(concurrency, len(planned))):
            tasks.create_task(worker(index))


async def request_until(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: msgspec.Struct,
    ok: frozenset[int],
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> httpx.Response:
    """An admin or wallet request sent until it answers one of `ok` (a 202 wallet or merchant, whose
    accounts the ledger-writer has not opened yet, is asked again)."""
    content = _ENCODER.encode(body)
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            response = await http.request(method, path, content=content, headers=headers)
        except httpx.TransportError as exc:
            last = repr(exc)
        else:
            if response.status_code in ok:
                return response
            last = f"HTTP {response.status_code} {response.text[:300]}"
            if response.status_code not in (202, 503):
                break
        await asyncio.sleep(0.1)
    raise RuntimeError(f"{method} {path} failed: {last}")


async def open_wallets(
    http: httpx.AsyncClient, owners: list[str], currency: str, concurrency: int = 8
) -> None:
    queue = list(owners)

    async def worker() -> None:
        while queue:
            owner = queue.pop()
            body = http_api.OpenWallet(owner_kind="user", owner_id=owner, currency=currency)  # type: ignore[arg-type]
            await request_until(http, "POST", "/v1/wallets", body, frozenset({200, 201}))

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, len(owners))):
            tasks.create_task(worker())


async def open_shop(http: httpx.AsyncClient, shop: Shop) -> tuple[str, str]:
    """Onboard the run's merchant and add its mini-app (admin key): the merchant key's id and secret."""
    made = await request_until(
        http,
        "POST",
        "/v1/admin/merchants",
        shop.onboarding(),
        frozenset({201}),
        headers={"Idempotency-Key": f"onboard-{shop.merchant_id}"},
    )
    await request_until(http, "POST", "/v1/admin/miniapps", shop.miniapp(), frozenset({200, 201}))
    return str(made.json()["keyId"]), str(made.json()["secret"])


def user_side(base_url: str, proxy_secret: str, connections: int = 64) -> httpx.AsyncClient:
    """The gateway's /v1/me as the front door reaches it: its proxy secret on every request."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(30.0, connect=5.0),
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        headers={PROXY_SECRET_HEADER: proxy_secret, "Accept": "application/json"},
    )
