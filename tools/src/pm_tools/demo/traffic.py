"""`pm demo`'s conversation with the gateway: signed HTTP only, every intent followed to its terminal
state, and the run that puts it together (`run_demo`)."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar, cast

import httpx
import msgspec

from pm_client import api
from pm_client.client import PMAuth, PMClient, PMError
from pm_tools.demo.errors import DemoError, GatewayUnavailableError
from pm_tools.demo.plan import DemoOptions, Planned, User, fee_rules, funding, plan
from pm_tools.demo.summary import DemoSummary, Outcome, WalletCheck, expected_balances, problems

T = TypeVar("T")


def _body(p: Planned, currency: str) -> api.CreateIntent:
    source: api.Party = api.OperatorParty() if p.payer is None else api.UserParty(id=p.payer.id)
    target: api.Party
    if p.payee is not None:
        target, to_name = api.UserParty(id=p.payee.id), p.payee.name
    else:
        assert p.proxy is not None, "a withdrawal names its PromptPay number"
        target, to_name = (
            api.PromptPayParty(proxy_type="MSISDN", proxy_value=p.proxy),
            f"PromptPay {p.proxy}",
        )
    return api.CreateIntent(
        type=p.type,
        amount=p.amount,
        currency=cast(api.Currency, currency),  # one of CURRENCIES: DemoOptions.check
        from_=source,
        to=target,
        from_name=p.payer.name if p.payer is not None else "PM operator",
        to_name=to_name,
        comment=p.comment or None,
        metadata={"demo": "pm demo"},
    )


# --- talking to the gateway -----------------------------------------------------------------------


def _latency(intent: api.Intent) -> float | None:
    created = next((e.at for e in intent.timeline if e.state == "CREATED"), intent.created_at)
    ended = next((e.at for e in reversed(intent.timeline) if e.state in api.TERMINAL_STATES), None)
    if created is None or ended is None:
        return None
    return (ended - created).total_seconds()


async def _bounded(concurrency: int, items: Sequence[T], work: Callable[[T], Awaitable[None]]) -> None:
    """`work(item)` for every item, at most `concurrency` at a time (closed loop: one worker per slot).

    The first DemoError stops every worker and is raised as it is (not in an exception group).
    """
    queue = list(reversed(items))
    failures: list[DemoError] = []

    async def worker() -> None:
        while queue and not failures:
            try:
                await work(queue.pop())
            except DemoError as exc:
                failures.append(exc)

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, len(items))):
            tasks.create_task(worker())
    if failures:
        raise failures[0]


def _refused(exc: PMError) -> DemoError:
    if exc.status in (401, 403):
        return DemoError(f"the gateway refused the key ({exc}); use an admin key (`pm up` writes one)", 2)
    return DemoError(f"the gateway answered {exc}")


class Demo:
    def __init__(self, client: PMClient, admin: httpx.AsyncClient, options: DemoOptions) -> None:
        self.client = client
        self.admin = admin
        self.options = options

    async def preflight(self) -> None:
        """The gateway answers /readyz with 200, else GatewayUnavailableError."""
        try:
            response = await self.admin.get("/readyz", timeout=5.0)
        except httpx.TransportError as exc:
            raise GatewayUnavailableError(
                f"the gateway at {self.admin.base_url} does not answer ({type(exc).__name__}: {exc}); "
                "is `pm up` running?"
            ) from exc
        if response.status_code != 200:
            raise GatewayUnavailableError(
                f"the gateway at {self.admin.base_url} is not ready "
                f"({response.status_code} {response.text[:200]})"
            )

    async def open_wallet(self, user: User) -> None:
        # 202 means the ledger-writer has not opened it yet: asking again answers once it has.
        deadline = time.monotonic() + self.options.wait_s
        while True:
            try:
                await self.client.open_wallet(user.id, self.options.currency)
                return
            except PMError as exc:
                if exc.status != 202:
                    raise _refused(exc) from exc
            except httpx.TransportError as exc:
                raise _lost(self.admin, exc) from exc
            if time.monotonic() > deadline:
                raise DemoError(f"wallet {user.id} still not open after {self.options.wait_s:.0f}s")
            await asyncio.sleep(0.2)

    async def install_fee_rules(self) -> None:
        encoder = msgspec.json.Encoder()
        for rule in fee_rules():
            try:
                response = await self.admin.post(
                    "/v1/admin/fee-rules",
                    content=encoder.encode(rule),
                    headers={"Content-Type": "application/json"},
                )
            except httpx.TransportError as exc:
                raise _lost(self.admin, exc) from exc
            if response.status_code != 201:
                problem = PMError(response.status_code, _problem(response))
                raise _refused(problem)

    async def send(self, outcome: Outcome) -> None:
        """Submit one intent and wait until it is terminal (or `wait_s` passes)."""
        p = outcome.planned
        try:
            created = await self.client.create_intent(_body(p, self.options.currency), idempotency_key=p.key)
            intent = await self.client.wait_intent(created.id, timeout=self.options.wait_s)
        except PMError as exc:
            if exc.status in (401, 403):
                raise _refused(exc) from exc
            outcome.error = str(exc)
            return
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        outcome.intent = intent
        if intent.status in api.TERMINAL_STATES:
            outcome.latency_s = _latency(intent)
        else:
            outcome.error = f"still {intent.status} after {self.options.wait_s:.0f}s"

    async def wallet(self, user: User, expected: int) -> WalletCheck:
        try:
            wallet = await self.client.get_wallet(user.id)
        except PMError as exc:
            raise _refused(exc) from exc
        except httpx.TransportError as exc:
            raise _lost(self.admin, exc) from exc
        balance = next((b for b in wallet.balances if b.currency == self.options.currency), None)
        return WalletCheck(
            user.id,
            user.name,
            user.funded,
            expected,
            balance.posted if balance else None,
            balance.pending if balance else None,
            balance.available if balance else None,
        )


def _lost(http: httpx.AsyncClient, exc: httpx.TransportError) -> GatewayUnavailableError:
    return GatewayUnavailableError(f"lost the gateway at {http.base_url}: {type(exc).__name__}: {exc}")


def _problem(response: httpx.Response) -> api.Problem | None:
    try:
        return msgspec.json.decode(response.content, type=api.Problem)
    except msgspec.DecodeError:
        return None


async def run_demo(gateway: str, key_id: str, secret: str, options: DemoOptions) -> DemoSummary:
    """One demo run against the gateway at `gateway`, signed with an admin key.

    Raises GatewayUnavailableError when nothing answers there, DemoError when the run cannot go on
    (the key is refused, a wallet does not open); otherwise returns the summary, problems included.
    """
    options.check()
    run_id = options.run_id or secrets.token_hex(3)
    rng = random.Random(options.seed)
    users, payments, _ghost = plan(options, run_id, rng)
    fundings = funding(users, payments, run_id, rng)
    # A connection per worker, so none waits for the pool while the others long-poll.
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=options.concurrency + 4))
    async with (
        PMClient(gateway, key_id, secret, transport=transport) as client,
        httpx.AsyncClient(base_url=gateway, auth=PMAuth(key_id, secret), timeout=35.0) as admin,
    ):
        demo = Demo(client, admin, options)
        await demo.preflight()
        await demo.install_fee_rules()
        rules_at = time.monotonic()
        await _bounded(options.concurrency, users, demo.open_wallet)
        funded = [Outcome(p) for p in fundings]
        await _bounded(options.concurrency, funded, demo.send)
        await asyncio.sleep(max(0.0, rules_at + options.rules_settle_s - time.monotonic()))
        paid = [Outcome(p) for p in payments]
        started = time.monotonic()
        await _bounded(options.concurrency, paid, demo.send)
        payments_s = time.monotonic() - started
        outcomes = funded + paid
        expected = expected_balances(users, outcomes)
        wallets = [await demo.wallet(u, expected[u.id]) for u in users]
    return DemoSummary(
        run_id, options.currency, users, outcomes, wallets, payments_s, problems(outcomes, wallets)
    )
