"""`pm demo` against a real fleet: gateway, orchestrator, ledger-writer, adapter-ipps and the IPPS
sandbox as processes, on a database of this module's own (so the fee revenue account and the intent
table hold only what these tests did). The gateway has a front-door proxy secret, which the demo is
given, so it answers the demo merchant's payment requests for its users at /v1/me.

The demo checks itself (it compares each outcome with its scenario, each wallet with what the settled
intents moved, and reads the ledger: per ledger debits = credits, no wallet or merchant account below
zero, the merchant's account); these tests check it again from outside: the intent and payment
request tables, the embedded ledger's accounts and the transaction history, read directly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest

from pm_client import api
from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.fleet import IPPS_SANDBOX
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import ALL_OPERATIONS, Permissions, create_key
from pm_shared.ledger import chart, ids, open_ledger
from pm_tools import demo, processes
from pm_tools.testing.db import new_database_url, run
from pm_tools.testing.fleet import KEY_ENCRYPTION_KEY, module_fleet, wait_ready
from pm_tools.testing.gateway import PROXY_SECRET
from pm_tools.testing.saga import RULES_REFRESH_ENV, settle_rules

pytestmark = pytest.mark.slow

STREAMS = (
    "pm:intents",
    "pm:events",
    "pm:ledger:commands",
    "pm:ledger:results",
    "pm:psp:results",
    "pm:psp:ipps:jobs",
)


@pytest.fixture(scope="module")
def database_url() -> Iterator[str]:
    """A fresh migrated database for this module (the `fleet` fixture runs the services on it)."""
    url = new_database_url()

    async def create() -> None:
        await db.ensure_database(url)
        await db.migrate(url)

    run(create())
    try:
        yield url
    finally:
        run(db.drop_database(url, force=True))


@dataclass(frozen=True)
class Running:
    url: str
    key_id: str
    secret: str
    database_url: str

    async def run(self, options: demo.DemoOptions, key: tuple[str, str] | None = None) -> demo.DemoSummary:
        """The demo, in process, as the command runs it: it answers for its users at the gateway's
        /v1/me with the proxy secret, and checks the embedded ledger at the end."""
        key_id, secret = key or (self.key_id, self.secret)
        door = demo.Door(self.url, proxy_secret=PROXY_SECRET)
        ledger = "embedded+" + self.database_url
        return await demo.run_demo(self.url, key_id, secret, options, door=door, ledger_url=ledger)

    def cli(self, *, proxy: bool = True) -> list[str]:
        """The command's options for this fleet: its gateway, its key, its ledger (and the proxy secret),
        and a QP sandbox that never answers (this fleet has none): the top-ups are left out."""
        secret = ["--proxy-secret", PROXY_SECRET] if proxy else []
        no_qp = processes.base_url(processes.free_port())
        rest = ["--database-url", self.database_url, "--qp-sandbox", no_qp]
        return ["--gateway", self.url, "--key-id", self.key_id, "--secret", self.secret, *secret, *rest]


async def new_admin_key(database_url: str, description: str = "pm demo test") -> tuple[str, str]:
    conn = await db.connect(database_url)
    try:
        key, secret = await create_key(
            conn,
            Cipher.from_setting(KEY_ENCRYPTION_KEY),
            permissions=Permissions(operations=frozenset({ALL_OPERATIONS}), owners=None, admin=True),
            description=description,
        )
    finally:
        await conn.close()
    return key.key_id, secret


@pytest.fixture(scope="module")
def admin(database_url: str) -> tuple[str, str]:
    """The admin key of this module's tests (id, secret): one for all, as `.pm/demo-key.json` is one
    for every `make up`, so the demo merchant onboarded by the first run is found again by the next."""
    return run(new_admin_key(database_url))


@pytest.fixture(scope="module")
def running(
    database_url: str, admin: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Running]:
    """The fleet and the IPPS sandbox (withdrawals are paid out through it), started once for the
    module: each test runs the demo against it again, as the demo runs against one `make up`."""
    lease = f"test:demo:ledger-writer:lease:{uuid.uuid4().hex[:8]}"
    workdir = tmp_path_factory.mktemp("demo")
    with module_fleet(database_url, workdir, streams=STREAMS, keys=[lease]) as fleet:
        sandbox = fleet.start(IPPS_SANDBOX.name)
        procs = [
            fleet.start("ledger-writer", env={"PM_LEDGER_WRITER_LEASE_KEY": lease}),
            fleet.start("orchestrator", env=RULES_REFRESH_ENV),
            fleet.start("gateway", env={"PM_GATEWAY_PROXY_SECRET": PROXY_SECRET}),
            fleet.start("adapter-ipps", env={"PM_ADAPTER_IPPS_IPPS_URL": sandbox.url("")}),
        ]
        run(wait_ready(sandbox, *procs))
        yield Running(procs[2].url(""), *admin, database_url)


# -- reading what happened, without the demo ---------------------------------------------------------


async def fetch(database_url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await db.connect(database_url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def intent_rows(database_url: str, intent_ids: list[str]) -> dict[str, asyncpg.Record]:
    sql = "SELECT id::text, type, state, failure_code, amount, fees FROM pm.intent WHERE id = ANY($1::uuid[])"
    return {row["id"]: row for row in await fetch(database_url, sql, intent_ids)}


async def history_count(database_url: str, owners: list[str]) -> int:
    sql = "SELECT count(*) FROM pm.tx_history WHERE owner_kind = 'user' AND owner_id = ANY($1)"
    return int((await fetch(database_url, sql, owners))[0][0])


async def ledger_posted(
    database_url: str, owners: list[tuple[str, str, int]], currency: str
) -> list[int | None]:
    """credits_posted - debits_posted of each (owner kind, owner id, code) account; None: no account."""
    ledger_id = chart.ledger_of(currency)
    wanted = [ids.account_id(kind, owner, ledger_id, code) for kind, owner, code in owners]
    ledger = await open_ledger("embedded+" + database_url, readonly=True)
    try:
        found = {a.id: a for a in await ledger.lookup_accounts(wanted)}
    finally:
        await ledger.close()
    return [found[i].credits_posted - found[i].debits_posted if i in found else None for i in wanted]


MERCHANT = [("merchant", demo.DEMO_MERCHANT, int(chart.Code.MERCHANT))]
REVENUE = [("operator", "fee_revenue", int(chart.Code.FEE_REVENUE))]


async def merchant_posted(running: Running) -> int:
    """The demo merchant's posted THB balance (0 before it was ever onboarded)."""
    (posted,) = await ledger_posted(running.database_url, MERCHANT, "THB")
    return posted or 0


async def add_limit(running: Running, rule: api.LimitRuleIn) -> None:
    async with httpx.AsyncClient(base_url=running.url, auth=PMAuth(running.key_id, running.secret)) as http:
        response = await http.post(
            "/v1/admin/limit-rules",
            content=msgspec.json.encode(rule),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text
    await settle_rules(time.monotonic())  # in force for the orchestrator's next batch


def scenario_counts(summary: demo.DemoSummary) -> Counter[str]:
    return Counter(o.planned.scenario for o in summary.outcomes)


async def assert_intents_as_planned(database_url: str, summary: demo.DemoSummary, *, count: int) -> None:
    """The intent table has the run's `count` intents: every payment from a funded payer to an open
    wallet settled, with the demo rules' fees; every settled charge with the merchant's commission,
    paid by the merchant; the others failed with their scenario's code."""
    outcomes = {o.intent.id: o for o in summary.outcomes if o.intent is not None}
    assert len(outcomes) == count
    rows = await intent_rows(database_url, list(outcomes))
    assert len(rows) == count
    for intent_id, row in rows.items():
        p = outcomes[intent_id].planned
        assert (row["state"], row["failure_code"]) == demo.EXPECTED[p.scenario], (p, dict(row))
        assert (row["type"], row["amount"]) == (p.type, p.amount)
        stamped = row["fees"] if isinstance(row["fees"], list) else json.loads(row["fees"])
        fees = {f["ruleId"]: (f["amount"], f.get("payer", "source")) for f in stamped}
        if p.scenario == "settles":
            assert fees == {rule: (fee, "source") for rule, fee in demo.demo_fees(p.amount).items()}, p
        elif p.scenario == "charge":
            assert fees == {demo.COMMISSION_RULE: (demo.commission(p.amount), "target")}, (p, fees)
        elif p.type in ("MINIAPP_CREDIT", "ADJUSTMENT"):
            assert fees == {}, (p, fees)
    assert any(demo.POST_RULE in demo.demo_fees(o.planned.amount) for o in summary.payments())


def expected_moves(summary: demo.DemoSummary) -> Counter[str]:
    """What the settled intents moved for each user and the merchant, computed here again from the
    plan and the rules (not from the demo's own bookkeeping)."""
    moves = Counter[str]()
    for o in (o for o in summary.outcomes if o.state == "SETTLED"):
        p = o.planned
        assert p.type != "PROMPTPAY_WITHDRAWAL", p  # these runs send none
        if isinstance(p.payee, demo.User | demo.Merchant):
            moves[p.payee.id] += p.amount - (demo.commission(p.amount) if p.type == "MINIAPP_CHARGE" else 0)
        if isinstance(p.payer, demo.User | demo.Merchant):
            moves[p.payer.id] -= p.amount + (sum(demo.demo_fees(p.amount).values()) if p.type == "P2P" else 0)
    return moves


async def assert_payment_requests(running: Running, summary: demo.DemoSummary) -> None:
    """The confirmed requests name their charge, the declined one none; none was made over the cap."""
    charges = {o.planned.key: o for o in summary.outcomes if o.planned.type == "MINIAPP_CHARGE"}
    rows = await fetch(
        running.database_url,
        "SELECT idempotency_key, status, intent_id::text, amount FROM pm.payment_request"
        " WHERE merchant_id = $1 AND idempotency_key = ANY($2)",
        demo.DEMO_MERCHANT,
        list(charges),
    )
    found = {row["idempotency_key"]: (row["status"], row["intent_id"], row["amount"]) for row in rows}
    assert found == {
        key: ("DECLINED", None, o.planned.amount)
        if o.planned.scenario == "declined"
        else ("CONFIRMED", o.intent.id if o.intent is not None else "?", o.planned.amount)
        for key, o in charges.items()
        if o.planned.scenario != "over-cap"
    }


async def assert_merchant_moved(running: Running, summary: demo.DemoSummary, before: int, moved: int) -> None:
    """The demo merchant's account moved by `moved` (its funding + charges - commission - credits), on
    the ledger and as the demo's own check found it."""
    fees = summary.fees_collected()
    assert moved == (
        summary.moved_in("merchant-funding")
        + summary.moved("MINIAPP_CHARGE")
        - fees[demo.COMMISSION_RULE]
        - summary.moved("MINIAPP_CREDIT")
    )
    assert await merchant_posted(running) - before == moved > 0
    merchant = summary.ledger.merchant if summary.ledger is not None else None
    assert merchant is not None and merchant.ok and (merchant.before or 0, merchant.moved) == (before, moved)


async def assert_ledger_adds_up(running: Running, summary: demo.DemoSummary) -> None:
    """Per ledger the accounts sum to zero (posted and pending), no wallet, merchant or liquidity account
    is below zero: read from the ledger's table here, and as the demo read it through the ledger."""
    rows = await fetch(
        running.database_url,
        "SELECT ledger, sum(debits_posted - credits_posted), sum(debits_pending - credits_pending),"
        " count(*) FILTER (WHERE code IN (1, 2, 30) AND debits_posted + debits_pending > credits_posted),"
        " count(*) FILTER (WHERE code = 2) FROM ledger.accounts GROUP BY ledger",
    )
    assert {int(r[0]): (int(r[1]), int(r[2]), r[3], r[4]) for r in rows} == {
        chart.ledger_of(c): (0, 0, 0, 1) for c in demo.CURRENCIES
    }
    check = summary.ledger
    assert check is not None and check.ok and check.problems() == [] and not check.below_zero
    assert {t.ledger for t in check.totals} == set(chart.LEDGERS.values())
    assert all(t.balanced for t in check.totals)
    assert check.checked["merchant account"] == check.checked["liquidity account"] == len(demo.CURRENCIES)
    assert check.checked["wallet"] >= len(summary.users)


# -- the demo, in process -----------------------------------------------------------------------------


async def test_demo_settles_funded_payments_fails_the_others_and_the_ledger_agrees(running: Running) -> None:
    (revenue_before,) = await ledger_posted(running.database_url, REVENUE, "THB")
    merchant_before = await merchant_posted(running)
    summary = await running.run(
        demo.DemoOptions(users=6, payments=40, concurrency=8, seed=11, credits=5, charges=6)
    )
    assert summary.problems == [] and summary.ok
    # 6 % and 4 % of 40, rounded, at least one each; 4 of the 6 users are funded. Six charges: one of
    # each fault (an empty wallet, a decline, over the cap), three that settle.
    assert summary.by_scenario() == {
        ("funding", "SETTLED", ""): 4,
        ("settles", "SETTLED", ""): 36,
        ("unfunded-payer", "FAILED", "INSUFFICIENT_FUNDS"): 2,
        ("no-payee-wallet", "FAILED", "ACCOUNT_NOT_FOUND"): 2,
        ("merchant-funding", "SETTLED", ""): 1,
        ("credit", "SETTLED", ""): 5,
        ("charge", "SETTLED", ""): 3,
        ("charge-unfunded", "FAILED", "INSUFFICIENT_FUNDS"): 1,
        ("declined", "DECLINED", ""): 1,
        ("over-cap", "REFUSED", "over_miniapp_cap"): 1,
    }
    assert summary.by_state() == {
        ("ADJUSTMENT", "SETTLED", ""): 5,
        ("P2P", "SETTLED", ""): 36,
        ("P2P", "FAILED", "INSUFFICIENT_FUNDS"): 2,
        ("P2P", "FAILED", "ACCOUNT_NOT_FOUND"): 2,
        ("MINIAPP_CREDIT", "SETTLED", ""): 5,
        ("MINIAPP_CHARGE", "SETTLED", ""): 3,
        ("MINIAPP_CHARGE", "FAILED", "INSUFFICIENT_FUNDS"): 1,
        ("MINIAPP_CHARGE", "DECLINED", ""): 1,
        ("MINIAPP_CHARGE", "REFUSED", "over_miniapp_cap"): 1,
    }
    # The intent table says the same, intent by intent (the declined and the refused request made none),
    # and so do the payment requests.
    await assert_intents_as_planned(running.database_url, summary, count=54)
    await assert_payment_requests(running, summary)

    # Balances straight from the ledger: what the demo read through the gateway, and what the settled
    # intents add up to (computed here again from the plan); nothing left pending.
    users = summary.users
    posted = await ledger_posted(running.database_url, [("user", u.id, 1) for u in users], "THB")
    moves = expected_moves(summary)
    assert posted == [moves[u.id] for u in users] == [w.posted for w in summary.wallets]
    assert all(w.pending == 0 for w in summary.wallets)
    assert [w.posted for w in summary.wallets if not w.funded] == [0, 0]
    assert all(w.posted is not None and w.posted > 0 for w in summary.wallets if w.funded)
    # The payee that never had a wallet still has none.
    (ghost,) = {o.planned.payee for o in summary.outcomes if o.planned.scenario == "no-payee-wallet"}
    assert isinstance(ghost, demo.User) and await ledger_posted(
        running.database_url, [("user", ghost.id, 1)], "THB"
    ) == [None]

    # The merchant's account moved by its funding + its charges - its commission - its credits.
    moved = moves[demo.DEMO_MERCHANT]
    await assert_merchant_moved(running, summary, merchant_before, moved)
    await assert_ledger_adds_up(running, summary)

    # The fees went to the operator's fee revenue account, the commission with them.
    fees = summary.fees_collected()
    assert fees[demo.PRE_RULE] > 0 and fees[demo.POST_RULE] > 0 and fees[demo.COMMISSION_RULE] > 0
    (revenue_after,) = await ledger_posted(running.database_url, REVENUE, "THB")
    assert revenue_before is not None and revenue_after is not None
    assert revenue_after - revenue_before == sum(fees.values())
    assert summary.moved("P2P") == sum(o.planned.amount for o in summary.payments() if o.state == "SETTLED")

    # Both parties of each settled payment, the funded user of each adjustment, and the user of each
    # settled credit and charge got a history row.
    assert await history_count(running.database_url, [u.id for u in users]) == 2 * 36 + 4 + 5 + 3

    # Timing figures exist and are sane.
    p50, p95 = summary.latency_ms(0.5), summary.latency_ms(0.95)
    assert p50 is not None and p95 is not None and 0 < p50 <= p95
    assert summary.throughput() > 0
    report = summary.to_json()
    assert report["ok"] is True and report["feesTotal"] == revenue_after - revenue_before
    assert isinstance(report["merchant"], dict) and report["merchant"]["moved"] == moved
    assert isinstance(report["ledger"], dict) and report["ledger"]["ok"] is True


async def test_a_second_demo_finds_the_merchant_again_and_another_admin_key_takes_it_over(
    running: Running,
) -> None:
    options = demo.DemoOptions(users=4, payments=3, concurrency=4, seed=2, credits=2, charges=2)
    first, again = await running.run(options), await running.run(options)
    # Another admin key: the merchant was onboarded under this module's, so its secret is rotated.
    taken = await running.run(options, await new_admin_key(running.database_url, "another admin"))
    assert first.ok and again.ok and taken.ok, (first.problems, again.problems, taken.problems)
    assert first.shop is not None and again.shop is not None and taken.shop is not None
    assert again.shop.onboarding.startswith("found again") and again.shop.miniapp_id == demo.DEMO_MINIAPP
    assert "secret rotated" in taken.shop.onboarding and taken.shop.miniapp_id == demo.DEMO_MINIAPP
    for summary in (first, again, taken):
        assert summary.ledger is not None and summary.ledger.merchant is not None
        assert summary.ledger.merchant.ok and summary.ledger.merchant.moved > 0
        assert summary.by_state()[("MINIAPP_CHARGE", "SETTLED", "")] == 2
        assert summary.by_state()[("MINIAPP_CREDIT", "SETTLED", "")] == 2
    # Each run starts where the one before left the merchant's account.
    assert again.ledger is not None and again.ledger.merchant is not None
    assert first.ledger is not None and first.ledger.merchant is not None
    assert again.ledger.merchant.before == first.ledger.merchant.after


async def test_demo_withdrawals_pay_out_through_promptpay_and_the_wallets_add_up(running: Running) -> None:
    summary = await running.run(demo.DemoOptions(users=5, payments=6, concurrency=4, seed=7, withdrawals=9))

    assert summary.problems == [] and summary.ok
    assert summary.shop is None  # no merchant traffic asked for
    assert {k: v for k, v in summary.by_scenario().items() if k[0] in ("withdrawal", "refused-payee")} == {
        ("withdrawal", "SETTLED", ""): 8,
        ("refused-payee", "FAILED", "PAYEE_INVALID"): 1,
    }
    withdrawn = [o for o in summary.outcomes if o.planned.type == "PROMPTPAY_WITHDRAWAL"]
    assert all(o.planned.amount % 100 == 0 and o.planned.amount != 50_000 for o in withdrawn)
    rows = await intent_rows(running.database_url, [o.intent.id for o in withdrawn if o.intent is not None])
    assert sorted((r["state"], r["failure_code"]) for r in rows.values()) == sorted(
        demo.EXPECTED[o.planned.scenario] for o in withdrawn
    )
    # What the wallets lost to withdrawals is what settled; nothing stays held for the refused one.
    assert summary.moved("PROMPTPAY_WITHDRAWAL") == sum(
        o.planned.amount for o in withdrawn if o.state == "SETTLED"
    )
    assert all(w.ok and w.pending == 0 for w in summary.wallets)
    assert summary.ledger is not None and summary.ledger.ok


async def test_demo_reports_a_payment_that_ends_otherwise_than_expected(running: Running) -> None:
    # A spending limit on one funded payer: its payments fail LIMIT_EXCEEDED instead of settling.
    run_id = f"lim{uuid.uuid4().hex[:6]}"
    capped = f"demo-{run_id}-000"
    await add_limit(
        running,
        api.LimitRuleIn(
            rule_id=f"demo-test-{run_id}",
            subject_kind="user",
            subject=capped,
            operation_type="P2P",
            currency="THB",
            period="day",
            max_amount=1,
        ),
    )
    summary = await running.run(demo.DemoOptions(users=4, payments=12, concurrency=4, seed=5, run_id=run_id))

    assert not summary.ok
    limited = [o for o in summary.payments() if getattr(o.planned.payer, "id", None) == capped]
    assert limited, "the seed gives the capped user no payment"
    settles = [o for o in limited if o.planned.scenario == "settles"]
    assert settles and all((o.state, o.failure_code) == ("FAILED", "LIMIT_EXCEEDED") for o in settles)
    for o in settles:
        assert o.intent is not None
        assert any(
            o.intent.id in problem and "got FAILED LIMIT_EXCEEDED" in problem for problem in summary.problems
        )


# -- the command ------------------------------------------------------------------------------------


def pm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The `pm` entry point (pyproject: pm_tools.cli.app:main) as a process."""
    script = Path(sys.executable).with_name("pm")
    argv = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from pm_tools.cli.app import main; main()"]
    )
    environ = None if env is None else {**os.environ, **env}
    return subprocess.run(
        [*argv, *args], capture_output=True, text=True, timeout=120, check=False, env=environ
    )


async def test_pm_demo_command_prints_the_summary_as_json_and_exits_0(running: Running) -> None:
    options = ["--users", "5", "--payments", "12", "--concurrency", "4", "--seed", "3", "--json"]
    done = pm("demo", *running.cli(), *options)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["problems"] == [] and report["topups"] is None
    # The command's three top-ups in THB, left out: no QP sandbox answers (`Running.cli`).
    assert [n.split(" at ")[0] for n in report["notes"]] == ["SBP top-ups left out: no QP sandbox answers"]
    counts = {(i["type"], i["state"], i["failureCode"]): i["count"] for i in report["intents"]}
    assert counts == {
        ("P2P", "SETTLED", None): 10,
        ("P2P", "FAILED", "INSUFFICIENT_FUNDS"): 1,
        ("P2P", "FAILED", "ACCOUNT_NOT_FOUND"): 1,
        # The command's default in THB: ten withdrawals, one to a number PromptPay does not know.
        ("PROMPTPAY_WITHDRAWAL", "SETTLED", None): 9,
        ("PROMPTPAY_WITHDRAWAL", "FAILED", "PAYEE_INVALID"): 1,
        # Its merchant defaults: eight credits, twelve charges (three of them bound not to settle).
        ("MINIAPP_CREDIT", "SETTLED", None): 8,
        ("MINIAPP_CHARGE", "SETTLED", None): 9,
        ("MINIAPP_CHARGE", "FAILED", "INSUFFICIENT_FUNDS"): 1,
        ("MINIAPP_CHARGE", "DECLINED", None): 1,
        ("MINIAPP_CHARGE", "REFUSED", "over_miniapp_cap"): 1,
        # Its exchanges in THB: eight settle both ways, a quote used again is refused, and one that buys
        # more than the USD liquidity holds fails.
        ("FX_EXCHANGE", "SETTLED", None): 8,
        ("FX_EXCHANGE", "REFUSED", "quote_used"): 1,
        ("FX_EXCHANGE", "FAILED", "LIQUIDITY_INSUFFICIENT"): 1,
        # Three users and the merchant; for the exchanges three USD wallets, the two liquidity accounts
        # and the user of the one beyond the liquidity.
        ("ADJUSTMENT", "SETTLED", None): 4 + 3 + 2 + 1,
    }
    assert report["moved"]["PROMPTPAY_WITHDRAWAL"] > 0 and report["moved"]["MINIAPP_CHARGE"] > 0
    # Five THB wallets and the USD ones of the three users who exchanged, each as its intents say.
    assert Counter(w["currency"] for w in report["wallets"]) == {"THB": 5, "USD": 3}
    assert all(w["ok"] for w in report["wallets"])
    exchanged = report["exchanges"]
    assert [(d["sell"], d["buy"]) for d in exchanged["directions"]] == [("THB", "USD"), ("USD", "THB")]
    assert [(c["currency"], c["ok"]) for c in exchanged["liquidity"]] == [("THB", True), ("USD", True)]
    merchant = report["merchant"]
    assert merchant["merchantId"] == demo.DEMO_MERCHANT and merchant["account"]["ok"] is True
    assert 0 < merchant["commission"] < merchant["charged"] and merchant["credited"] > 0
    assert report["ledger"]["ok"] is True and report["ledger"]["belowZero"] == []
    assert all(entry["balanced"] for entry in report["ledger"]["ledgers"])


async def test_pm_demo_command_prints_tables_and_without_a_door_leaves_the_charges_out(
    running: Running, tmp_path: Path
) -> None:
    key_file = tmp_path / "demo-key.json"
    key_file.write_text(json.dumps({"keyId": running.key_id, "secret": running.secret}))
    # No proxy secret, and nothing where the front door and the Auth Center would be.
    nowhere = str(processes.free_port())
    done = pm(
        *f"demo --gateway {running.url} --key-file {key_file} --users 4 --payments 5".split(),
        *["--database-url", running.database_url],
        env={"PM_FRONT_DOOR_PORT": nowhere, "PM_AUTH_SANDBOX_PORT": nowhere, "PM_QP_SANDBOX_PORT": nowhere},
    )
    assert done.returncode == 0, done.stderr
    for text in (
        "intents by type and outcome",
        "INSUFFICIENT_FUNDS",
        "ACCOUNT_NOT_FOUND",
        "MINIAPP_CREDIT",
        "latency p95",
        f"The demo merchant {demo.DEMO_MERCHANT}",
        "what its settled intents leave on it",
        "Exchanges at USD/THB",
        "THB → USD: bought out of liquidity",
        "USD liquidity as the settled intents leave it",
        "sum zero",
        "none below zero",
        "liquidity accounts",
        "ok: all",
        "no wallet, merchant or liquidity account below zero",
    ):
        assert text in done.stdout, done.stdout
    assert "UNBALANCED" not in done.stdout and "MISMATCH" not in done.stdout
    assert not re.search(r"│ MINIAPP_CHARGE +│", done.stdout), done.stdout  # no charge was sent
    assert "note: charges left out: nothing answers for users" in done.stderr, done.stderr
    assert f"note: SBP top-ups left out: no QP sandbox answers at http://127.0.0.1:{nowhere}" in done.stderr


async def test_pm_demo_command_exits_1_listing_intents_that_ended_otherwise(running: Running) -> None:
    # Every RUB payment now exceeds a limit: none of the demo's payments can end as planned.
    await add_limit(
        running,
        api.LimitRuleIn(
            rule_id=f"demo-test-rub-{uuid.uuid4().hex[:6]}",
            subject_kind="tier",
            subject="standard",
            operation_type="P2P",
            currency="RUB",
            period="day",
            max_amount=1,
        ),
    )
    done = pm("demo", *running.cli(), *["--currency", "RUB", "--users", "4", "--payments", "6"])
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "LIMIT_EXCEEDED" in done.stdout and "UNEXPECTED" in done.stdout, done.stdout
    assert "did not end as expected" in done.stderr, done.stderr
    assert "got FAILED LIMIT_EXCEEDED" in done.stderr, done.stderr
    # The funding (ADJUSTMENT: no limits) still settled in RUB, and so did the merchant's business.
    assert re.search(r"ADJUSTMENT +│ SETTLED", done.stdout), done.stdout
    assert re.search(r"MINIAPP_CHARGE +│ SETTLED", done.stdout), done.stdout


def test_pm_demo_without_a_gateway_exits_2_saying_so(tmp_path: Path) -> None:
    url = processes.base_url(processes.free_port())
    commands = [
        ("demo", "--gateway", url, "--key-id", "pk_nobody", "--secret", "x", "--payments", "3"),
        ("demo", "--gateway", url, "--key-file", str(tmp_path / "none.json")),
    ]
    # The two commands are independent: run side by side, as two shells would.
    with ThreadPoolExecutor(len(commands)) as pool:
        done, missing = pool.map(lambda args: pm(*args), commands)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "does not answer" in done.stderr and url in done.stderr, done.stderr
    assert missing.returncode == 2 and "no key file" in missing.stderr, missing.stderr
