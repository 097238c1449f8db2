"""The saga under load while the orchestrator and the ledger-writer are SIGKILLed (tests/test_saga.py):
the seeded plan, sending it with the kills in the middle, waiting until every intent has ended, and
reading back that nothing was lost or applied twice.

Test support only: it imports pytest (a development dependency).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import httpx
import pytest

from pm_client import api as http_api
from pm_client.api import TERMINAL_STATES
from pm_client.client import PMClient, PMError
from pm_shared.ledger import ids
from pm_tools.chaos.load import p2p_fee_rules
from pm_tools.testing.saga import (
    CURRENCY,
    IntentRow,
    SagaFleet,
    accounts,
    adjustment,
    expected_wallets,
    fee_revenue,
    fetch,
    p2p,
    posted,
    transfers,
    wallet_id,
)


@dataclass(frozen=True)
class Planned:
    key: str
    body: http_api.CreateIntent
    admin: bool
    """Sent with the admin key (an ADJUSTMENT); else with the user key."""
    expected: tuple[str, str | None]
    """(state, failure code) it must end in."""


@dataclass(frozen=True)
class LoadPlan:
    funded: list[str]
    unfunded: list[str]
    intents: list[Planned]
    """In sending order."""
    funding: dict[str, int]
    """What each funded user is given first."""


def chaos_fees(amount: int) -> int:
    """The chaos rules: 1 % PRE (at most 300), and 200 POST on 50,000 or more."""
    return min(amount // 100, 300) + (200 if amount >= 50_000 else 0)


def chaos_fee_rules(run_id: str) -> list[http_api.FeeRuleIn]:
    """The rules `chaos_fees` computes, for the payers of this run only."""
    return p2p_fee_rules(f"{run_id}-", f"{run_id}-", 50_000)


def chaos_plan(run_id: str, rng: random.Random, *, intents: int, funded: int, unfunded: int) -> LoadPlan:
    """Funded and unfunded users, the intents and each funded user's funding.

    Funded users receive, pay each other and get adjusted both ways; unfunded ones only pay (and
    never receive), so their payments fail whatever order things happen in, and every funded user
    is funded with more than it will ever send, so every one of its payments settles.
    """
    rich = [f"{run_id}-u{i:03d}" for i in range(funded)]
    empty = [f"{run_id}-empty{i:02d}" for i in range(unfunded)]
    needs: Counter[str] = Counter()
    planned: list[Planned] = []
    for n in range(intents):
        key = f"{run_id}:{n}"
        roll = rng.random()
        amount = rng.choice((rng.randint(100, 20_000), rng.randint(100, 20_000), rng.randint(50_000, 90_000)))
        if roll < 0.01:
            planned.append(Planned(key, adjustment(rng.choice(rich), amount), True, ("SETTLED", None)))
        elif roll < 0.02:
            owner = rng.choice(rich)
            needs[owner] += amount
            planned.append(Planned(key, adjustment(owner, amount, credit=False), True, ("SETTLED", None)))
        elif roll < 0.05:
            payer, payee = rng.choice(empty), rng.choice(rich)
            body = p2p(payer, payee, amount, comment="no money")
            planned.append(Planned(key, body, False, ("FAILED", "INSUFFICIENT_FUNDS")))
        else:
            payer, payee = rng.sample(rich, 2)
            needs[payer] += amount + chaos_fees(amount)
            body = p2p(payer, payee, amount, from_name=payer, to_name=payee, comment=f"payment {n}")
            planned.append(Planned(key, body, False, ("SETTLED", None)))
    funding = {u: needs[u] + rng.randint(1_000, 50_000) for u in rich}
    return LoadPlan(rich, empty, planned, funding)


async def in_parallel(items: list[str], work: Callable[[str], Awaitable[None]], concurrency: int) -> None:
    queue = list(reversed(items))

    async def worker() -> None:
        while queue:
            await work(queue.pop())

    async with asyncio.TaskGroup() as tasks:
        for _ in range(min(concurrency, len(items))):
            tasks.create_task(worker())


# --- sending, with the kills in the middle -------------------------------------------------------


@dataclass
class Sent:
    accepted: dict[str, Planned] = field(default_factory=dict)
    """By intent id."""
    refused: list[str] = field(default_factory=list)
    killed: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Process name → (pid, intents accepted when it was killed)."""
    submitted_s: float = 0.0


async def _kill_and_restart(
    saga: SagaFleet, sent: Sent, kill_orchestrator: asyncio.Event, kill_writer: asyncio.Event
) -> None:
    """SIGKILL the orchestrator, then the writer, each when its event is set; start both again."""
    await kill_orchestrator.wait()
    old = saga.orchestrator
    old.popen.kill()  # SIGKILL: no shutdown, no ack, whatever was in flight is lost
    sent.killed["orchestrator"] = (old.popen.pid, len(sent.accepted))
    await asyncio.to_thread(old.popen.wait, 10)
    orchestrator = saga.start_orchestrator()
    await kill_writer.wait()
    old_writer = saga.writer
    old_writer.popen.kill()
    sent.killed["ledger-writer"] = (old_writer.popen.pid, len(sent.accepted))
    await asyncio.to_thread(old_writer.popen.wait, 10)
    writer = saga.start_writer()
    await orchestrator.wait_ready()
    await writer.wait_ready(timeout=30)


async def send_while_killing(
    saga: SagaFleet,
    planned: Sequence[Planned],
    *,
    in_flight: int,
    kill_orchestrator_at: int,
    kill_writer_at: int,
) -> Sent:
    """Send every intent from `in_flight` workers; the orchestrator is SIGKILLed (and restarted) once
    `kill_orchestrator_at` are accepted, the writer once `kill_writer_at` are."""
    sent = Sent()
    kill_orchestrator, kill_writer = asyncio.Event(), asyncio.Event()
    queue = list(reversed(planned))
    started = time.monotonic()
    transport = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=in_flight + 10))
    user = PMClient(saga.url, saga.user.key_id, saga.user.secret, timeout=40.0, transport=transport)
    async with user, saga.client(saga.admin, connections=20) as admin:

        async def worker() -> None:
            while queue:
                p = queue.pop()
                try:
                    created = await (admin if p.admin else user).create_intent(p.body, idempotency_key=p.key)
                except (PMError, httpx.HTTPError) as exc:
                    sent.refused.append(f"{p.key}: {exc!r}")
                    continue
                sent.accepted[created.id] = p
                if len(sent.accepted) >= kill_orchestrator_at:
                    kill_orchestrator.set()
                if len(sent.accepted) >= kill_writer_at:
                    kill_writer.set()

        async with asyncio.TaskGroup() as tasks:
            chaos = tasks.create_task(_kill_and_restart(saga, sent, kill_orchestrator, kill_writer))
            for _ in range(in_flight):
                tasks.create_task(worker())
            await asyncio.sleep(0)
        sent.submitted_s = time.monotonic() - started
        assert chaos.done()
    return sent


async def wait_terminal(saga: SagaFleet, intent_ids: list[str], timeout: float) -> Counter[tuple[str, str]]:
    """(state, failure code) → intents, once every one is terminal; fails the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await fetch(
            saga.database_url,
            "SELECT state, coalesce(failure_code, '') AS code, count(*) AS n FROM pm.intent"
            " WHERE id = ANY($1::uuid[]) GROUP BY 1, 2",
            intent_ids,
        )
        counts = Counter({(r["state"], r["code"]): int(r["n"]) for r in rows})
        if all(state in TERMINAL_STATES for state, _ in counts):
            return counts
        if time.monotonic() > deadline:
            open_rows = await fetch(
                saga.database_url,
                "SELECT id::text, state, step, updated_at FROM pm.intent"
                " WHERE id = ANY($1::uuid[]) AND state <> ALL($2::text[]) LIMIT 5",
                intent_ids,
                sorted(TERMINAL_STATES),
            )
            about = {r["id"]: saga.about(r["id"])[-6:] for r in open_rows[:2]}
            pytest.fail(
                f"not every intent terminal after {timeout}s: {dict(counts)}; e.g. {open_rows}; "
                f"their logs: {about}; problems logged: {saga.logged('ERROR', 'CRITICAL')[-10:]}"
            )
        await asyncio.sleep(0.5)


# --- reading back --------------------------------------------------------------------------------


async def check_wallets(saga: SagaFleet, all_rows: dict[str, IntentRow], plan: LoadPlan) -> None:
    """Every user wallet holds what the settled intents (of every test of the module) moved, fees
    included, on the ledger and in PM's own projection; the fee account holds every fee."""
    assert all(r.state in TERMINAL_STATES for r in all_rows.values())
    expected = expected_wallets(all_rows.values())
    mapped = await fetch(
        saga.database_url,
        "SELECT owner_id FROM pm.tb_account_map WHERE owner_kind = 'user' AND currency = $1 AND code = 1",
        CURRENCY,
    )
    owners = [r["owner_id"] for r in mapped]
    assert set(plan.funded + plan.unfunded) <= set(owners)
    on_ledger = await accounts(saga.database_url, [wallet_id(o) for o in owners])
    balances = {o: posted(on_ledger[wallet_id(o)]) for o in owners}
    assert {o: b for o, b in balances.items() if b != expected[o]} == {}, {
        o: (b, expected[o]) for o, b in balances.items() if b != expected[o]
    }
    assert all(balances[u] == 0 for u in plan.unfunded)
    projected = await fetch(
        saga.database_url,
        "SELECT owner_id, credits_posted - debits_posted AS posted FROM pm.account_balance"
        " WHERE owner_kind = 'user' AND currency = $1 AND code = 1",
        CURRENCY,
    )
    assert {r["owner_id"]: int(r["posted"]) for r in projected} == {
        o: b for o, b in balances.items() if o in {r["owner_id"] for r in projected}
    }
    fees = sum(int(f["amount"]) for r in all_rows.values() if r.state == "SETTLED" for f in r.fees)
    assert await fee_revenue(saga) == fees


async def check_ledgers_balance(saga: SagaFleet) -> None:
    """Every ledger's debits equal its credits, and no account has a pending amount left."""
    sums = await fetch(
        saga.database_url,
        "SELECT ledger, sum(debits_posted) AS debits, sum(credits_posted) AS credits FROM ledger.accounts"
        " GROUP BY ledger",
    )
    assert sums and all(r["debits"] == r["credits"] for r in sums), sums


async def nothing_pending(saga: SagaFleet) -> bool:
    pending = await fetch(
        saga.database_url,
        "SELECT count(*) AS n FROM ledger.accounts WHERE debits_pending <> 0 OR credits_pending <> 0",
    )
    return int(pending[0]["n"]) == 0


async def check_posts_and_history(saga: SagaFleet, rows: dict[str, IntentRow], intent_ids: list[str]) -> None:
    """The principal of every settled intent is posted with its amount, no failed intent has one; the
    history has both parties of every settled payment and the user of every settled adjustment, once.
    Posted: the post of the pending principal on a route that authorizes, the plain principal on one
    that does not (one round trip, `pm_shared.intents.legs.holds`)."""
    held = await fetch(
        saga.database_url,
        "SELECT id::text FROM pm.intent"
        " WHERE id = ANY($1::uuid[]) AND (route IS NULL OR 'authorize' = ANY(route))",
        intent_ids,
    )
    holds = {r["id"] for r in held}
    post_ids = {i: ids.transfer_id(i, "principal:post" if i in holds else "principal") for i in intent_ids}
    found = await transfers(saga.database_url, list(post_ids.values()))
    settled_missing = [i for i in intent_ids if rows[i].state == "SETTLED" and post_ids[i] not in found]
    failed_posted = [i for i in intent_ids if rows[i].state == "FAILED" and post_ids[i] in found]
    assert (settled_missing, failed_posted) == ([], [])
    for i in intent_ids:
        if rows[i].state == "SETTLED":
            assert int(found[post_ids[i]].amount) == rows[i].amount, i
    history = await fetch(
        saga.database_url,
        "SELECT intent_id::text AS id, count(*) AS n FROM pm.tx_history WHERE intent_id = ANY($1::uuid[])"
        " GROUP BY 1",
        intent_ids,
    )
    per_intent = {r["id"]: int(r["n"]) for r in history}
    want = {i: 2 if rows[i].type == "P2P" else 1 for i in intent_ids if rows[i].state == "SETTLED"}
    assert per_intent == want
