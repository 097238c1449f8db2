"""The saga end to end: gateway, orchestrator and ledger-writer as real processes (pm_tools.testing.fleet),
real Redis and PostgreSQL, the embedded ledger, on a database of this module's own.

Every request goes through the gateway, signed. What happened is then read three ways: the API (the
intent, its fees, legs and timeline, wallets and their history), the intent table, and the ledger
itself. Each test names its own users (`t<n>-<run>-…`) and fee rules whose conditions match only those
users, so the rules of one test never price another's payments, whatever order they run in.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import msgspec
import pytest
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_client import api as http_api
from pm_shared.ledger import ids
from pm_shared.messages import LedgerResult, new_message_id
from pm_shared.streams import Publisher
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.saga import (
    CURRENCY,
    Clients,
    SagaFleet,
    admin_post,
    api_wallets,
    check_balances,
    failed,
    fee_revenue,
    fee_rule,
    fetch,
    fund,
    group_state,
    history_rows,
    intent_rows,
    ledger_wallets,
    limit_rule,
    module_saga,
    names,
    nothing_posted,
    only_payer,
    open_wallet,
    p2p,
    run_intent,
    settle_rules,
    states,
    transfers,
)
from pm_tools.testing.saga_load import (
    chaos_fee_rules,
    chaos_fees,
    chaos_plan,
    check_ledgers_balance,
    check_posts_and_history,
    check_wallets,
    in_parallel,
    nothing_pending,
    send_while_killing,
    wait_terminal,
)

pytestmark = pytest.mark.slow

RESULTS_KEY = "{pm:ledger:results:0}"
RESULTS_DLQ = "{pm:ledger:results:0}:dlq"


@pytest.fixture(scope="module")
def saga(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    """The module's fleet on a fresh migrated database (dropped at the end), with its two keys."""
    with module_saga(Path(tmp_path_factory.mktemp("saga"))) as running:
        yield running


@pytest.fixture
async def clients(saga: SagaFleet) -> AsyncIterator[Clients]:
    async with (
        saga.client(saga.admin) as admin,
        saga.client(saga.user) as user,
        saga.http(saga.admin) as http,
    ):
        yield Clients(admin, user, http)


# -- 1. a payment with a PRE and a POST fee ----------------------------------------------------------


async def _t1_rules(clients: Clients, run_id: str, payer: str, payer2: str) -> list[object]:
    """A 2 % PRE fee for both payers, a flat POST fee for the first, one paid by the payee for the
    second; their versions."""
    pre = await fee_rule(
        clients,
        rule_id=f"{run_id}-pre",
        operation_type="P2P",
        condition=only_payer(payer, payer2),
        amount="intent.amount * 2 / 100",
        timing="PRE",
        max_fee=10_000,
        priority=10,
    )
    post = await fee_rule(
        clients,
        rule_id=f"{run_id}-post",
        operation_type="P2P",
        condition=only_payer(payer),
        amount="300",
        timing="POST",
        max_fee=1_000,
        priority=20,
    )
    # The same kind of fee, paid by the payee: taken from what it just received.
    post_payee = await fee_rule(
        clients,
        rule_id=f"{run_id}-post-payee",
        operation_type="P2P",
        condition=only_payer(payer2),
        amount="125",
        timing="POST",
        payer="target",
        max_fee=1_000,
        priority=30,
    )
    return [pre["version"], post["version"], post_payee["version"]]


async def _check_t1_ledger(saga: SagaFleet, intent_id: str, run_id: str) -> None:
    """The ledger holds the legs as one linked chain of posted transfers (P2P's `transfer` step: one
    round trip), all with the intent's UUID in user_data_128; nothing was held, so nothing was posted."""
    wanted = {"principal": 12_345, f"fee:{run_id}-pre": 246, f"fee:{run_id}-post": 300}
    on_ledger = await transfers(saga.database_url, [ids.transfer_id(intent_id, leg) for leg in wanted])
    assert {leg: int(on_ledger[ids.transfer_id(intent_id, leg)].amount) for leg in wanted} == wanted
    assert {int(t.user_data_128) for t in on_ledger.values()} == {uuid.UUID(intent_id).int}
    flags = [int(on_ledger[ids.transfer_id(intent_id, leg)].flags) for leg in wanted]
    assert flags == [int(tb.TransferFlags.LINKED)] * 2 + [0]
    posts = [ids.transfer_id(intent_id, f"{leg}:post") for leg in ("principal", f"fee:{run_id}-pre")]
    assert await transfers(saga.database_url, posts) == {}


async def test_p2p_settles_with_pre_and_post_fees_and_exact_balances(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t1")
    payer, payee = f"{run_id}-payer", f"{run_id}-payee"
    payer2, payee2 = f"{run_id}-payer2", f"{run_id}-payee2"
    versions = await _t1_rules(clients, run_id, payer, payer2)
    assert versions == [1, 1, 1]
    rules_at = time.monotonic()
    for owner in (payer, payee, payer2, payee2):
        await open_wallet(clients.admin, owner)
    funding = await fund(clients.admin, payer, 50_000)
    await fund(clients.admin, payer2, 50_000)
    revenue_before = await fee_revenue(saga)
    await settle_rules(rules_at)

    intent = await run_intent(
        clients.user,
        p2p(payer, payee, 12_345, from_name="Somchai Srisuk", to_name="Malee Wongsa", comment="lunch ค่าข้าว"),
    )
    assert (intent.status, intent.failure_code) == ("SETTLED", None), (intent, saga.about(intent.id))
    # 2 % of 12,345 in integer minor units is 246; the POST fee is flat.
    assert [(f.rule_id, f.rule_version, f.amount, f.currency, f.timing) for f in intent.fees] == [
        (f"{run_id}-pre", 1, 246, "THB", "PRE"),
        (f"{run_id}-post", 1, 300, "THB", "POST"),
    ]
    assert states(intent) == ["CREATED", "VALIDATED", "AUTHORIZED", "SETTLED"]
    assert [e.previous for e in intent.timeline] == [None, "CREATED", "VALIDATED", "AUTHORIZED"]
    legs = {leg.name: leg for leg in intent.legs}
    assert {n: (leg.amount, leg.state) for n, leg in legs.items()} == {
        "principal": (12_345, "posted"),
        f"fee:{run_id}-pre": (246, "posted"),
        f"fee:{run_id}-post": (300, "posted"),
    }
    assert all(leg.transfer_id == str(ids.transfer_id(intent.id, n)) for n, leg in legs.items())

    await _check_t1_ledger(saga, intent.id, run_id)

    # The second payment: PRE fee from the payer, POST fee from the payee.
    second = await run_intent(clients.user, p2p(payer2, payee2, 20_000, from_name="Ploy", to_name="Anan"))
    assert (second.status, second.failure_code) == ("SETTLED", None), (second, saga.about(second.id))
    assert [(f.rule_id, f.rule_version, f.amount, f.timing) for f in second.fees] == [
        (f"{run_id}-pre", 1, 400, "PRE"),
        (f"{run_id}-post-payee", 1, 125, "POST"),
    ]

    await check_balances(
        saga,
        clients.admin,
        {
            payer: 50_000 - 12_345 - 246 - 300,
            payee: 12_345,
            payer2: 50_000 - 20_000 - 400,
            payee2: 20_000 - 125,
        },
    )
    assert await fee_revenue(saga) - revenue_before == 246 + 300 + 400 + 125

    # History: one row per party of each payment, with the names, the comment and the fee it paid.
    payer_history = await clients.admin.wallet_history(payer)
    assert history_rows(payer_history, intent.id) == [
        ("out", "P2P", 12_345, "THB", 546, "Malee Wongsa", "lunch ค่าข้าว")
    ]
    assert history_rows(payer_history, funding.id) == [
        ("in", "ADJUSTMENT", 50_000, "THB", 0, "PM operator", "saga test funding")
    ]
    assert history_rows(await clients.admin.wallet_history(payee), intent.id) == [
        ("in", "P2P", 12_345, "THB", 0, "Somchai Srisuk", "lunch ค่าข้าว")
    ]
    assert history_rows(await clients.admin.wallet_history(payer2), second.id) == [
        ("out", "P2P", 20_000, "THB", 400, "Anan", None)
    ]
    assert history_rows(await clients.admin.wallet_history(payee2), second.id) == [
        ("in", "P2P", 20_000, "THB", 125, "Ploy", None)
    ]


# -- 2. insufficient funds --------------------------------------------------------------------------


async def test_insufficient_funds_fails_posts_nothing_and_releases_limits(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t2")
    payer, payee = f"{run_id}-payer", f"{run_id}-payee"
    await fee_rule(
        clients,
        rule_id=f"{run_id}-pre",
        operation_type="P2P",
        condition=only_payer(payer),
        amount="100",
        timing="PRE",
        max_fee=1_000,
    )
    # One payment a day: the failed one must give its count back, or the next could not be made.
    await limit_rule(clients, rule_id=f"{run_id}-count", subject=payer, period="day", max_count=1)
    rules_at = time.monotonic()
    for owner in (payer, payee):
        await open_wallet(clients.admin, owner)
    funding = await fund(clients.admin, payer, 5_000)
    revenue_before = await fee_revenue(saga)
    await settle_rules(rules_at)

    # 4,950 + the 100 fee is more than the 5,000 the payer has (the amount alone would fit).
    short = await run_intent(clients.user, p2p(payer, payee, 4_950))
    assert failed(short, "INSUFFICIENT_FUNDS"), (short, saga.about(short.id))
    assert states(short)[0] == "CREATED" and states(short)[-1] == "FAILED", short.timeline
    assert "SETTLED" not in states(short)
    await nothing_posted(saga, short)
    await check_balances(saga, clients.admin, {payer: 5_000, payee: 0})

    paid = await run_intent(clients.user, p2p(payer, payee, 3_000))
    assert (paid.status, paid.failure_code) == ("SETTLED", None), (paid, saga.about(paid.id))
    assert [(f.amount, f.timing) for f in paid.fees] == [(100, "PRE")]
    # The count cap is reached now: the rule was in force all along.
    capped = await run_intent(clients.user, p2p(payer, payee, 100))
    assert failed(capped, "LIMIT_EXCEEDED"), (capped, saga.about(capped.id))
    await nothing_posted(saga, capped)

    await check_balances(saga, clients.admin, {payer: 5_000 - 3_100, payee: 3_000})
    assert await fee_revenue(saga) - revenue_before == 100
    history = await clients.admin.wallet_history(payer)
    assert sorted(h.intent_id for h in history.items) == sorted([funding.id, paid.id])


# -- 3. day and month limits ------------------------------------------------------------------------


async def test_day_and_month_limits_fail_with_limit_exceeded_and_smaller_intents_still_settle(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t3")
    day, month_count, month_amount, payee = (f"{run_id}-{s}" for s in ("day", "mcount", "mamount", "payee"))
    await limit_rule(clients, rule_id=f"{run_id}-day", subject=day, period="day", max_amount=50_000)
    # For the month users the day rules are looser than the month ones: the month rule must bind.
    await limit_rule(clients, rule_id=f"{run_id}-mc-day", subject=month_count, period="day", max_count=10)
    await limit_rule(clients, rule_id=f"{run_id}-mc", subject=month_count, period="month", max_count=2)
    await limit_rule(
        clients, rule_id=f"{run_id}-ma-day", subject=month_amount, period="day", max_amount=100_000
    )
    await limit_rule(clients, rule_id=f"{run_id}-ma", subject=month_amount, period="month", max_amount=5_000)
    rules_at = time.monotonic()
    for owner in (day, month_count, month_amount, payee):
        await open_wallet(clients.admin, owner)
    for owner in (day, month_count, month_amount):
        await fund(clients.admin, owner, 1_000_000)
    await settle_rules(rules_at)

    plan = [
        (day, 30_000, "SETTLED"),
        (day, 30_000, "LIMIT_EXCEEDED"),  # 60,000 > 50,000 a day
        (day, 20_000, "SETTLED"),  # 50,000: at the cap, not over it
        (day, 1, "LIMIT_EXCEEDED"),
        (month_count, 1_000, "SETTLED"),
        (month_count, 1_000, "SETTLED"),
        (month_count, 1_000, "LIMIT_EXCEEDED"),  # a third payment this month
        (month_amount, 4_000, "SETTLED"),
        (month_amount, 2_000, "LIMIT_EXCEEDED"),  # 6,000 > 5,000 a month
        (month_amount, 1_000, "SETTLED"),
        (month_amount, 1, "LIMIT_EXCEEDED"),
    ]
    got: list[tuple[str, int, str]] = []
    intents: list[http_api.Intent] = []
    for payer, amount, _ in plan:
        intent = await run_intent(clients.user, p2p(payer, payee, amount))
        intents.append(intent)
        got.append((payer, amount, intent.failure_code or intent.status))
    assert got == plan, [(i.id, i.status, i.failure_code) for i in intents]
    for intent in intents:
        if intent.status == "FAILED":
            await nothing_posted(saga, intent)
            assert "VALIDATED" not in states(intent), intent.timeline

    await check_balances(
        saga,
        clients.admin,
        {
            day: 1_000_000 - 50_000,
            month_count: 1_000_000 - 2_000,
            month_amount: 1_000_000 - 5_000,
            payee: 50_000 + 2_000 + 5_000,
        },
    )


# -- 4. a fee rule changes without a restart ----------------------------------------------------------


async def test_new_fee_rule_version_takes_effect_without_restarting_the_orchestrator(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t4")
    payer, payee = f"{run_id}-payer", f"{run_id}-payee"
    rule_id = f"{run_id}-flat"

    def rule(amount: str) -> dict[str, object]:
        return {
            "rule_id": rule_id,
            "operation_type": "P2P",
            "condition": only_payer(payer),
            "amount": amount,
            "timing": "PRE",
            "max_fee": 1_000,
        }

    first = await fee_rule(clients, **rule("150"))
    rules_at = time.monotonic()
    for owner in (payer, payee):
        await open_wallet(clients.admin, owner)
    await fund(clients.admin, payer, 100_000)
    revenue_before = await fee_revenue(saga)
    orchestrator_pid = saga.orchestrator.popen.pid
    await settle_rules(rules_at)

    before = await run_intent(clients.user, p2p(payer, payee, 10_000))
    assert before.status == "SETTLED", (before, saga.about(before.id))
    assert [(f.rule_id, f.rule_version, f.amount) for f in before.fees] == [(rule_id, 1, 150)]

    second = await fee_rule(clients, **rule("275"))
    assert (first["version"], second["version"]) == (1, 2)
    await settle_rules(time.monotonic())

    after = await run_intent(clients.user, p2p(payer, payee, 10_000))
    assert after.status == "SETTLED", (after, saga.about(after.id))
    assert [(f.rule_id, f.rule_version, f.amount) for f in after.fees] == [(rule_id, 2, 275)]
    # The same orchestrator process priced both.
    assert saga.orchestrator.popen.pid == orchestrator_pid and saga.orchestrator.popen.poll() is None

    await check_balances(saga, clients.admin, {payer: 100_000 - 20_000 - 150 - 275, payee: 20_000})
    assert await fee_revenue(saga) - revenue_before == 425
    rows = await intent_rows(saga.database_url, [before.id, after.id])
    assert [(f["ruleVersion"], f["amount"]) for f in rows[before.id].fees] == [(1, 150)]
    assert [(f["ruleVersion"], f["amount"]) for f in rows[after.id].fees] == [(2, 275)]


# -- 5. duplicate and reordered ledger results --------------------------------------------------------


def _entry_key(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


async def test_duplicate_and_reordered_ledger_results_change_nothing(
    saga: SagaFleet, clients: Clients, redis: Redis
) -> None:
    run_id = names("t5")
    payer, payee = f"{run_id}-payer", f"{run_id}-payee"
    await fee_rule(
        clients,
        rule_id=f"{run_id}-post",
        operation_type="P2P",
        condition=only_payer(payer),
        amount="200",
        timing="POST",
        max_fee=1_000,
    )
    rules_at = time.monotonic()
    for owner in (payer, payee):
        await open_wallet(clients.admin, owner)
    await fund(clients.admin, payer, 40_000)
    await settle_rules(rules_at)
    intent = await run_intent(clients.user, p2p(payer, payee, 7_000, comment="once only"))
    assert intent.status == "SETTLED", (intent, saga.about(intent.id))
    assert [f.amount for f in intent.fees] == [200]

    async def snapshot() -> tuple[object, ...]:
        seen = await clients.user.get_intent(intent.id)
        db_rows = await fetch(
            saga.database_url,
            "SELECT (SELECT count(*) FROM pm.intent_event WHERE intent_id = $1::uuid) AS events,"
            " (SELECT count(*) FROM pm.tx_history WHERE intent_id = $1::uuid) AS history,"
            " (SELECT coalesce(sum(credits_posted - debits_posted), 0) FROM pm.account_balance"
            "   WHERE owner_kind = 'user' AND owner_id = ANY($2)) AS projected",
            intent.id,
            [payer, payee],
        )
        return (
            seen.status,
            seen.failure_code,
            [(e.state, e.previous, e.at) for e in seen.timeline],
            [(leg.name, leg.state) for leg in seen.legs],
            await api_wallets(clients.admin, payer, payee),
            await ledger_wallets(saga, payer, payee),
            await fee_revenue(saga),
            db_rows,
        )

    before = await snapshot()
    assert before[4] == {payer: (32_800, 0, 32_800), payee: (7_000, 0, 7_000)}

    results = [
        msgspec.json.decode(fields[PAYLOAD_FIELD], type=LedgerResult)
        for _, fields in await redis.xrange(RESULTS_KEY) or []
        if fields and PAYLOAD_FIELD in fields
    ]
    mine = [r for r in results if r.intent_id == intent.id]
    assert {r.step for r in mine} == {"transfer"}, mine  # one round trip
    assert all(r.ok for r in mine), mine
    # The same results again, newest first, then copies under new message ids (as a resent command's
    # results would be), newest first too.
    again = list(reversed(mine))
    copies = [msgspec.structs.replace(r, message_id=new_message_id()) for r in reversed(mine)]
    published = await Publisher(redis).publish_many("pm:ledger:results", again + copies)
    last = max(published, key=_entry_key)

    async def consumed() -> bool:
        delivered, pending = await group_state(redis, RESULTS_KEY, "orchestrator")
        return _entry_key(delivered) >= _entry_key(last) and pending == 0

    await eventually(consumed, timeout=15, what="the republished results read and acknowledged")
    await asyncio.sleep(0.5)  # whatever the results caused is committed by now

    assert await snapshot() == before
    assert await redis.xlen(RESULTS_DLQ) == 0, await redis.xrange(RESULTS_DLQ)
    _, pending = await group_state(redis, RESULTS_KEY, "orchestrator")
    assert pending == 0
    errors = [r for r in saga.about(intent.id) if r.get("level") in ("ERROR", "CRITICAL")]
    assert errors == []


# -- a route this build cannot follow ------------------------------------------------------------------


async def test_intent_of_a_type_without_a_built_route_fails_route_unavailable(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t7")
    payer = f"{run_id}-payer"
    await open_wallet(clients.admin, payer)
    await fund(clients.admin, payer, 10_000)
    # A route naming a step this build does not have (an operator's typo, or a newer build's step).
    route = (
        "UPDATE pm.payment_route SET steps = $1, updated_at = now()"
        " WHERE operation_type = 'PROMPTPAY_WITHDRAWAL' RETURNING 1"
    )
    changed_at = time.monotonic()
    await fetch(saga.database_url, route, ["validate", "manual_review", "authorize", "psp_payout", "settle"])
    try:
        await settle_rules(changed_at)
        body = http_api.CreateIntent(
            type="PROMPTPAY_WITHDRAWAL",
            amount=1_000,
            currency=CURRENCY,
            from_=http_api.UserParty(id=payer),
            to=http_api.PromptPayParty(proxy_type="MSISDN", proxy_value="0812345678"),
        )
        intent = await run_intent(clients.user, body, timeout=15)
    finally:
        default = ["validate", "price", "reserve_limits", "authorize", "psp_payout", "settle"]
        await fetch(saga.database_url, route, default)
    assert failed(intent, "ROUTE_UNAVAILABLE"), (intent, saga.about(intent.id))
    assert "manual_review" in (intent.timeline[-1].reason or ""), intent.timeline
    assert states(intent) == ["CREATED", "FAILED"], intent.timeline
    found = await transfers(saga.database_url, [ids.transfer_id(intent.id, "principal")])
    assert found == {}
    await check_balances(saga, clients.admin, {payer: 10_000})


# -- 6. SIGKILL of the orchestrator and the writer under load ------------------------------------------

# A thousand intents from a hundred workers: each kill lands with about a hundred intents in flight
# and hundreds still to come (the writer's lease runs out and its successor takes over while the
# load goes on), the same proportions as before at half the length.
CHAOS_INTENTS = 1_000
CHAOS_FUNDED = 120
CHAOS_UNFUNDED = 10
CHAOS_IN_FLIGHT = 100
KILL_ORCHESTRATOR_AT = 300
KILL_WRITER_AT = 600
TERMINAL_WAIT_S = 100.0


@pytest.mark.timeout(240)
async def test_sigkill_of_orchestrator_and_writer_under_load_loses_and_doubles_nothing(
    saga: SagaFleet, clients: Clients
) -> None:
    run_id = names("t6")
    rng = random.Random(20261124)
    plan = chaos_plan(run_id, rng, intents=CHAOS_INTENTS, funded=CHAOS_FUNDED, unfunded=CHAOS_UNFUNDED)
    for rule in chaos_fee_rules(run_id):
        await admin_post(clients.http, "/v1/admin/fee-rules", rule)
    rules_at = time.monotonic()

    async def open_(owner: str) -> None:
        await open_wallet(clients.admin, owner)

    async with saga.client(saga.admin, connections=60) as admin:

        async def fund_(owner: str) -> None:
            await fund(admin, owner, plan.funding[owner])

        await in_parallel(plan.funded + plan.unfunded, open_, 10)
        await in_parallel(plan.funded, fund_, 50)
    await settle_rules(rules_at)

    # -- the load, and the kills in the middle of it
    started = time.monotonic()
    sent = await send_while_killing(
        saga,
        plan.intents,
        in_flight=CHAOS_IN_FLIGHT,
        kill_orchestrator_at=KILL_ORCHESTRATOR_AT,
        kill_writer_at=KILL_WRITER_AT,
    )
    assert sent.refused == [], sent.refused[:5]
    assert len(sent.accepted) == CHAOS_INTENTS
    assert set(sent.killed) == {"orchestrator", "ledger-writer"}, sent.killed

    intent_ids = list(sent.accepted)
    counts = await wait_terminal(saga, intent_ids, TERMINAL_WAIT_S)
    done_s = time.monotonic() - started

    # Every intent ended as planned: funded payers always have the money, empty ones never do.
    rows = await intent_rows(saga.database_url, intent_ids)
    wrong = [
        (i, rows[i].state, rows[i].failure_code, p.expected)
        for i, p in sent.accepted.items()
        if (rows[i].state, rows[i].failure_code) != p.expected
    ]
    assert wrong == [], (len(wrong), wrong[:10], counts)
    for i, p in sent.accepted.items():
        if rows[i].state == "SETTLED" and p.body.type == "P2P":
            assert rows[i].fee_total() == chaos_fees(p.body.amount), (i, rows[i].fees)

    # Every wallet of the module: the ledger says what the settled intents (all of them, every test's)
    # moved, funding and fees included; PM's own projection says the same.
    await check_wallets(saga, await intent_rows(saga.database_url), plan)
    # Nothing left pending anywhere (a void follows FAILED by a moment), and every ledger balances.
    await eventually(
        lambda: nothing_pending(saga), timeout=15, what="no pending amount on any ledger account"
    )
    await check_ledgers_balance(saga)
    await check_posts_and_history(saga, rows, intent_ids)

    assert done_s < 150, f"took {done_s:.0f}s"
    print(  # the figures of the run, for whoever reads the output (-s)
        f"chaos: {len(sent.accepted)} intents submitted in {sent.submitted_s:.1f}s, all terminal after"
        f" {done_s:.1f}s; {dict(counts)}; killed {sent.killed}"
    )
