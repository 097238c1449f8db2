"""`pm demo`'s conversation with the gateway: signed HTTP (the admin key, and the demo merchant's for
its credits and payment requests), the users' answers to payment requests at /v1/me
(`pm_tools.demo.door`), the exchanges (`pm_tools.demo.fx_traffic`), the SBP top-ups and their QRs
paid in the QP sandbox (`pm_tools.demo.topups`), every intent followed to its terminal state, and the
run that puts it together (`run_demo`), checked at the end against the ledger itself
(`pm_tools.demo.ledger_check`)."""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar, cast

import httpx
import msgspec

from pm_client import api, merchant_api
from pm_client.client import PMAuth, PMClient, PMError
from pm_tools.demo.door import Door, DoorClient
from pm_tools.demo.errors import DemoError, GatewayUnavailableError
from pm_tools.demo.fx_plan import FOREIGN, HOME, FxPlan, fx_plan
from pm_tools.demo.fx_traffic import Exchanges
from pm_tools.demo.ledger_check import (
    LedgerCheck,
    LedgerReader,
    LiquidityCheck,
    MerchantCheck,
    liquidity_account,
    merchant_account,
)
from pm_tools.demo.merchant import DEMO_MERCHANT, SHOP, commission_rule, merchant_funding, merchant_plan
from pm_tools.demo.plan import (
    REFUSED,
    SBP_CURRENCY,
    DemoOptions,
    Liquidity,
    Merchant,
    Planned,
    Sbp,
    User,
    fee_rules,
    funding,
    plan,
)
from pm_tools.demo.shop import ShopKeys, open_shop
from pm_tools.demo.summary import (
    DemoSummary,
    Outcome,
    WalletCheck,
    expected_balances,
    liquidity_moves,
    party_moves,
    problems,
)
from pm_tools.demo.topup_plan import TopupPlan, topup_plan
from pm_tools.demo.topups import QpSandbox, Topups

T = TypeVar("T")


def _party(party: User | Merchant | Liquidity | Sbp) -> api.Party:
    if isinstance(party, Liquidity):
        return api.LiquidityParty()
    if isinstance(party, Sbp):
        return api.SbpParty()
    return api.MerchantParty(id=party.id) if isinstance(party, Merchant) else api.UserParty(id=party.id)


def _body(p: Planned, run_currency: str, miniapp_id: str | None = None) -> api.CreateIntent:
    source: api.Party = api.OperatorParty() if p.payer is None else _party(p.payer)
    target: api.Party
    if p.payee is not None:
        target, to_name = _party(p.payee), p.payee.name
    else:
        assert p.proxy is not None, "a withdrawal names its PromptPay number"
        target, to_name = (
            api.PromptPayParty(proxy_type="MSISDN", proxy_value=p.proxy),
            f"PromptPay {p.proxy}",
        )
    return api.CreateIntent(
        type=p.type,
        amount=p.amount,
        # One of CURRENCIES: DemoOptions.check (an exchange's other currency is USD).
        currency=cast(api.Currency, p.currency or run_currency),
        from_=source,
        to=target,
        from_name=p.payer.name if p.payer is not None else "PM operator",
        to_name=to_name,
        comment=p.comment or None,
        metadata={"demo": "pm demo"},
        miniapp_id=miniapp_id if p.type.startswith("MINIAPP_") else None,
    )


def _payment_request(p: Planned, currency: str, miniapp_id: str) -> merchant_api.CreatePaymentRequest:
    assert isinstance(p.payer, User), "a charge is paid by a user"
    return merchant_api.CreatePaymentRequest(
        miniapp_id=miniapp_id,
        user_id=p.payer.id,
        amount=p.amount,
        currency=cast(api.Currency, currency),
        description=p.comment,
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
    def __init__(
        self, client: PMClient, admin: httpx.AsyncClient, options: DemoOptions, qp: QpSandbox | None = None
    ) -> None:
        self.client = client
        self.admin = admin
        self.options = options
        self.shop: ShopKeys | None = None
        self.merchant: PMClient | None = None
        """Signed with the demo merchant's key (its credits and payment requests)."""
        self.door: DoorClient | None = None
        self.notes: list[str] = []
        self.fx = Exchanges(client, self.follow, self.send)
        self.topups = Topups(client, self.follow, options.wait_s, qp)

    async def aclose(self) -> None:
        if self.merchant is not None:
            await self.merchant.aclose()
        if self.door is not None:
            await self.door.aclose()

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

    async def open_wallet(self, wallet: tuple[User, str]) -> None:
        """Open the user's wallet in the currency (202 means the ledger-writer has not opened it yet:
        asking again answers once it has)."""
        user, currency = wallet
        deadline = time.monotonic() + self.options.wait_s
        while True:
            try:
                await self.client.open_wallet(user.id, currency)
                return
            except PMError as exc:
                if exc.status != 202:
                    raise _refused(exc) from exc
            except httpx.TransportError as exc:
                raise _lost(self.admin, exc) from exc
            if time.monotonic() > deadline:
                raise DemoError(f"wallet {user.id} still not open after {self.options.wait_s:.0f}s")
            await asyncio.sleep(0.2)

    async def install_fee_rules(self, rules: Sequence[api.FeeRuleIn]) -> None:
        encoder = msgspec.json.Encoder()
        for rule in rules:
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

    async def open_shop(self, run_id: str, door: Door | None, user: str) -> ShopKeys:
        """The demo merchant set up (`pm_tools.demo.shop`), its key's client, and the door for charges."""
        shop, notes = await open_shop(self.client, self.admin, run_id, self.options.wait_s)
        self.shop, self.notes = shop, self.notes + notes
        transport = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=self.options.concurrency + 4)
        )
        self.merchant = PMClient(str(self.admin.base_url), shop.key_id, shop.secret, transport=transport)
        if self.options.charges:
            assert door is not None, "DemoOptions with charges need a door"
            self.door = DoorClient(door)
            await self.door.preflight(user)
        return shop

    async def send(self, outcome: Outcome) -> None:
        """Submit one intent and wait until it is terminal (or `wait_s` passes); a charge is the
        merchant's payment request and the user's answer (`charge`)."""
        p = outcome.planned
        if p.type == "MINIAPP_CHARGE":
            await self.charge(outcome)
            return
        if p.type == "FX_EXCHANGE":
            await self.fx.exchange(outcome)
            return
        merchant = p.type == "MINIAPP_CREDIT"
        client = self.merchant if merchant else self.client
        assert client is not None and (self.shop is not None or not merchant), "the merchant is set up first"
        miniapp_id = self.shop.summary.miniapp_id if self.shop is not None else None
        try:
            created = await client.create_intent(
                _body(p, self.options.currency, miniapp_id), idempotency_key=p.key
            )
        except PMError as exc:
            if exc.status in (401, 403) and not merchant:
                raise _refused(exc) from exc
            outcome.error = str(exc)
            return
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        await self.follow(client, created.id, outcome)

    async def follow(self, client: PMClient, intent_id: str, outcome: Outcome) -> None:
        """Wait for the intent to be terminal (or `wait_s` to pass) and note it on `outcome`."""
        try:
            intent = await client.wait_intent(intent_id, timeout=self.options.wait_s)
        except PMError as exc:
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

    async def charge(self, outcome: Outcome) -> None:
        """The merchant asks the user to pay; the user confirms (or declines) at /v1/me; the charge
        the confirmation makes is followed to its end. A request over the cap is refused outright."""
        p = outcome.planned
        assert self.merchant is not None and self.shop is not None and self.door is not None
        request = _payment_request(p, self.options.currency, self.shop.summary.miniapp_id)
        try:
            asked = await self.merchant.create_payment_request(request, idempotency_key=p.key)
        except PMError as exc:
            code = exc.problem.code if exc.problem is not None else None
            if p.expected == (REFUSED, code):
                outcome.refused = code
            else:
                outcome.error = str(exc)
            return
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc}"
            return
        outcome.request = asked
        try:
            if p.scenario == "declined":
                await self.decline(outcome, asked)
                return
            confirmed = await self.door.confirm(request.user_id, asked.id)
        except httpx.TransportError as exc:
            outcome.error = f"{type(exc).__name__}: {exc} (answering {asked.id})"
            return
        if confirmed.status_code != 202:
            outcome.error = f"HTTP {confirmed.status_code} {confirmed.text[:200]} (confirming {asked.id})"
            return
        charge = msgspec.json.decode(confirmed.content, type=api.Intent)
        await self.follow(self.merchant, charge.id, outcome)

    async def decline(self, outcome: Outcome, asked: merchant_api.PaymentRequest) -> None:
        """The user declines; a confirmation afterwards must be refused (409 payment_request_declined)."""
        assert self.door is not None and isinstance(outcome.planned.payer, User)
        user = outcome.planned.payer.id
        declined = await self.door.decline(user, asked.id)
        if declined.status_code != 200:
            outcome.error = f"HTTP {declined.status_code} {declined.text[:200]} (declining {asked.id})"
            return
        outcome.request = msgspec.json.decode(declined.content, type=merchant_api.PaymentRequest)
        again = await self.door.confirm(user, asked.id)
        problem = _problem(again)
        if (again.status_code, problem.code if problem else None) != (409, "payment_request_declined"):
            outcome.error = (
                f"confirming the declined request {asked.id} answered {again.status_code} "
                f"{again.text[:200]}, not 409 payment_request_declined"
            )

    async def wallets(
        self, wallets: Sequence[tuple[User, str]], expected: dict[tuple[str, str], int]
    ) -> list[WalletCheck]:
        """Each (user, currency) wallet as the gateway shows it, beside what it should hold."""
        found: dict[str, api.Wallet] = {}
        out: list[WalletCheck] = []
        for user, currency in wallets:
            if user.id not in found:
                try:
                    found[user.id] = await self.client.get_wallet(user.id)
                except PMError as exc:
                    raise _refused(exc) from exc
                except httpx.TransportError as exc:
                    raise _lost(self.admin, exc) from exc
            balance = next((b for b in found[user.id].balances if b.currency == currency), None)
            out.append(
                WalletCheck(
                    owner_id=user.id,
                    name=user.name,
                    funded=user.funded,
                    currency=currency,
                    expected=expected[(user.id, currency)],
                    posted=balance.posted if balance else None,
                    pending=balance.pending if balance else None,
                    available=balance.available if balance else None,
                )
            )
        return out


def _lost(http: httpx.AsyncClient, exc: httpx.TransportError) -> GatewayUnavailableError:
    return GatewayUnavailableError(f"lost the gateway at {http.base_url}: {type(exc).__name__}: {exc}")


def _problem(response: httpx.Response) -> api.Problem | None:
    try:
        return msgspec.json.decode(response.content, type=api.Problem)
    except msgspec.DecodeError:
        return None


@dataclass(frozen=True)
class Planning:
    """What one run sends: its users, the fundings (sent first) and the rest, in sending order."""

    run_id: str
    users: list[User]
    fundings: list[Planned]
    payments: list[Planned]
    fx: FxPlan | None = None
    """The exchanges' part of the plan (their rate, who exchanges), None without exchanges."""
    topups: TopupPlan | None = None
    """The SBP top-ups' part (their rate, the THB liquidity they need), None without top-ups; sent
    only when the QP sandbox answers."""

    def wallets(self, currency: str) -> list[tuple[User, str]]:
        """Every wallet the run opens and checks: each user's in the run's `currency`, and a USD one
        for each user who exchanges."""
        foreign = self.fx.users if self.fx is not None else []
        return [(u, currency) for u in self.users] + [(u, FOREIGN) for u in foreign]

    @classmethod
    def of(cls, options: DemoOptions) -> Planning:
        run_id = options.run_id or secrets.token_hex(3)
        rng = random.Random(options.seed)
        users, payments, _ghost = plan(options, run_id, rng)
        if options.merchant:
            payments += merchant_plan(options, run_id, rng, users)
        fx = fx_plan(options, run_id, rng, users)
        if fx is not None:
            for exchange in fx.exchanges:  # among the other traffic
                payments.insert(rng.randint(0, len(payments)), exchange)
        fundings = funding(users, payments, run_id, rng)
        if options.merchant:
            fundings.append(merchant_funding(payments, run_id, rng))
        if fx is not None:
            fundings += fx.fundings
        # Drawn last, so a seed plans the rest of the run as it did before top-ups were added.
        return cls(run_id, users, fundings, payments, fx, topup_plan(options, run_id, rng, users))


async def _posted(reader: LedgerReader | None, accounts: Sequence[int]) -> dict[int, int | None]:
    """The posted balance of each account (None: not opened yet) before the run moves money."""
    if reader is None:
        return {}
    return {account: (await reader.balance(account))[0] for account in accounts}


async def _ledger(
    reader: LedgerReader, before: dict[int, int | None], outcomes: Sequence[Outcome], currency: str
) -> LedgerCheck:
    """The ledger's own check, with the merchant's and the liquidity accounts read `before` the run
    held to what the run's settled intents moved (`currency` is the run's)."""
    ledger = await reader.check()
    merchant = merchant_account(DEMO_MERCHANT, currency)
    if merchant in before:
        after, pending = await reader.balance(merchant)
        moved = party_moves(outcomes, currency)[(SHOP.id, currency)]
        ledger.merchant = MerchantCheck(
            DEMO_MERCHANT, currency, merchant, before[merchant], after, pending, moved
        )
    moves = liquidity_moves(outcomes, currency)
    for money in (HOME, FOREIGN, SBP_CURRENCY):
        account = liquidity_account(money)
        if account in before:
            after, pending = await reader.balance(account)
            ledger.liquidity.append(
                LiquidityCheck(money, account, before[account], after, pending, moves[money])
            )
    return ledger


def _watched(planning: Planning, currency: str, merchant: bool, topups: bool) -> list[int]:
    """The accounts read before the run and held to what its intents move: the merchant's, and the
    liquidity accounts the exchanges and the top-ups use."""
    watched = [merchant_account(DEMO_MERCHANT, currency)] if merchant else []
    moneys = ([HOME, FOREIGN] if planning.fx is not None else []) + ([HOME, SBP_CURRENCY] if topups else [])
    return watched + [liquidity_account(money) for money in dict.fromkeys(moneys)]


async def _run(demo: Demo, planning: Planning, door: Door | None, reader: LedgerReader | None) -> DemoSummary:
    """The run itself, once the gateway (and the ledger, when checked) answered."""
    options = demo.options
    rules = fee_rules() + ([commission_rule()] if options.merchant else [])
    await demo.install_fee_rules(rules)
    rules_at = time.monotonic()
    wallets = planning.wallets(options.currency)
    await _bounded(options.concurrency, wallets, demo.open_wallet)
    shop = await demo.open_shop(planning.run_id, door, planning.users[0].id) if options.merchant else None
    # Without a QP sandbox to pay in, the top-ups are left out whole, their liquidity funding too.
    topups = planning.topups if planning.topups is not None and await demo.topups.reachable() else None
    before = await _posted(reader, _watched(planning, options.currency, shop is not None, topups is not None))
    rate = await demo.fx.set_rate(planning.fx.rate) if planning.fx is not None else None
    topup_rate = await demo.fx.set_rate(topups.rate) if topups is not None else None
    funded = [Outcome(p) for p in planning.fundings + (topups.fundings if topups is not None else [])]
    await _bounded(options.concurrency, funded, demo.send)
    await asyncio.sleep(max(0.0, rules_at + options.rules_settle_s - time.monotonic()))
    paid = [Outcome(p) for p in planning.payments]
    started = time.monotonic()
    await _bounded(options.concurrency, paid, demo.send)
    payments_s = time.monotonic() - started
    outcomes = funded + paid
    if planning.fx is not None:
        outcomes += await demo.fx.afterwards(outcomes, reader, planning.fx.users, planning.run_id)
    if topups is not None:
        # After the rest, so the payment phase's throughput and latency stay the payments' own: a
        # top-up waits for its QR, then for its payer (the demo, in the QP sandbox).
        topped = [Outcome(p) for p in topups.topups]
        await _bounded(options.concurrency, topped, demo.topups.topup)
        outcomes += topped
    expected = expected_balances([(u.id, c) for u, c in wallets], outcomes, options.currency)
    checks = await demo.wallets(wallets, expected)
    ledger = await _ledger(reader, before, outcomes, options.currency) if reader is not None else None
    return DemoSummary(
        planning.run_id,
        options.currency,
        planning.users,
        outcomes,
        checks,
        payments_s,
        problems(outcomes, checks, ledger),
        shop=shop.summary if shop is not None else None,
        ledger=ledger,
        notes=demo.notes + demo.fx.notes + demo.topups.notes,
        rate=rate,
        topup_rate=topup_rate,
    )


async def run_demo(
    gateway: str,
    key_id: str,
    secret: str,
    options: DemoOptions,
    *,
    door: Door | None = None,
    ledger_url: str | None = None,
    qp: QpSandbox | None = None,
) -> DemoSummary:
    """One demo run against the gateway at `gateway`, signed with an admin key.

    `door` is how the users answer the merchant's payment requests (needed when `options.charges`);
    `qp` is the QP sandbox the top-ups' QRs are paid in (without one that answers, `options.topups`
    are left out, and the summary's notes say so); `ledger_url` (TigerBeetle or
    `embedded+postgresql://…`), when given, is read at the end for the money check
    (`pm_tools.demo.ledger_check`). Raises GatewayUnavailableError when nothing answers at the
    gateway, DemoError when the run cannot go on (the key is refused, a wallet does not open, the
    ledger or the door cannot be reached); otherwise returns the summary, problems included.
    """
    options.check()
    if options.charges and door is None:
        raise DemoError("charges need a way to answer for the users (a front door or the proxy secret)", 2)
    planning = Planning.of(options)
    # A connection per worker, so none waits for the pool while the others long-poll.
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=options.concurrency + 4))
    async with (
        PMClient(gateway, key_id, secret, transport=transport) as client,
        httpx.AsyncClient(base_url=gateway, auth=PMAuth(key_id, secret), timeout=35.0) as admin,
    ):
        demo = Demo(client, admin, options, qp)
        await demo.preflight()
        reader = await LedgerReader.open(ledger_url) if ledger_url is not None else None
        try:
            return await _run(demo, planning, door, reader)
        finally:
            await demo.aclose()
            if reader is not None:
                await reader.close()
