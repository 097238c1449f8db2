"""`pm demo` against a real fleet: gateway, orchestrator, ledger-writer, adapter-ipps and the IPPS
sandbox as processes, on a database of this module's own (so the fee revenue account and the intent
table hold only what these tests did).

The demo checks itself (it compares each outcome with its scenario and each wallet with what the
settled intents moved); these tests check it again from outside: the intent table, the embedded
ledger's accounts and the transaction history, read directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import msgspec
import pytest
from redis.asyncio import Redis

from pm_client import api
from pm_client.client import PMAuth
from pm_shared import db
from pm_shared.fleet import IPPS_SANDBOX
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import ALL_OPERATIONS, Permissions, create_key
from pm_shared.ledger import chart, ids, open_ledger
from pm_tools import demo, processes
from pm_tools.testing.db import new_database_url, run
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import KEY_ENCRYPTION_KEY, Fleet, delete_streams

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


@pytest.fixture
async def ipps_sandbox(tmp_path: Path) -> AsyncIterator[str]:
    """The IPPS sandbox as a process on a free port (withdrawals are paid out through it): its URL."""
    port = processes.free_port()
    env = processes.environment(IPPS_SANDBOX, port=port)
    with (tmp_path / "ipps-sandbox.stderr").open("wb") as err:
        popen = processes.spawn(IPPS_SANDBOX, env, stderr=err)
    url = processes.base_url(port)

    async def healthy() -> bool:
        assert popen.poll() is None, "the IPPS sandbox exited"
        try:
            async with httpx.AsyncClient(timeout=2.0) as http:
                return (await http.get(url + processes.ready_path(IPPS_SANDBOX))).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        await eventually(healthy, timeout=20, what="the IPPS sandbox answers /healthz")
        yield url
    finally:
        popen.kill()
        popen.wait(10)


@pytest.fixture
async def running(fleet: Fleet, redis: Redis, ipps_sandbox: str) -> AsyncIterator[Running]:
    await delete_streams(redis, *STREAMS)
    lease = f"test:demo:ledger-writer:lease:{uuid.uuid4().hex[:8]}"
    procs = [
        fleet.start("ledger-writer", env={"PM_LEDGER_WRITER_LEASE_KEY": lease}),
        fleet.start("orchestrator"),
        fleet.start("gateway"),
        fleet.start("adapter-ipps", env={"PM_ADAPTER_IPPS_IPPS_URL": ipps_sandbox}),
    ]
    try:
        for proc in procs:
            await proc.wait_ready()
        conn = await db.connect(fleet.database_url)
        try:
            key, secret = await create_key(
                conn,
                Cipher.from_setting(KEY_ENCRYPTION_KEY),
                permissions=Permissions(operations=frozenset({ALL_OPERATIONS}), owners=None, admin=True),
                description="pm demo test",
            )
        finally:
            await conn.close()
        yield Running(procs[2].url(""), key.key_id, secret, fleet.database_url)
    finally:
        await redis.delete(lease)


# -- reading what happened, without the demo ---------------------------------------------------------


async def intent_rows(database_url: str, intent_ids: list[str]) -> dict[str, asyncpg.Record]:
    conn = await db.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT id::text, type, state, failure_code, amount, fees FROM pm.intent"
            " WHERE id = ANY($1::uuid[])",
            intent_ids,
        )
    finally:
        await conn.close()
    return {row["id"]: row for row in rows}


async def history_count(database_url: str, owners: list[str]) -> int:
    conn = await db.connect(database_url)
    try:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM pm.tx_history WHERE owner_kind = 'user' AND owner_id = ANY($1)", owners
        )
    finally:
        await conn.close()
    return count


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


async def add_limit(running: Running, rule: api.LimitRuleIn) -> None:
    async with httpx.AsyncClient(base_url=running.url, auth=PMAuth(running.key_id, running.secret)) as http:
        response = await http.post(
            "/v1/admin/limit-rules",
            content=msgspec.json.encode(rule),
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 201, response.text


def scenario_counts(summary: demo.DemoSummary) -> Counter[str]:
    return Counter(o.planned.scenario for o in summary.outcomes)


async def assert_intents_as_planned(database_url: str, summary: demo.DemoSummary, *, count: int) -> None:
    """The intent table has the run's `count` intents: every payment from a funded payer to an open
    wallet settled, with the demo rules' fees; the others failed with their scenario's code."""
    outcomes = {o.intent.id: o for o in summary.outcomes if o.intent is not None}
    assert len(outcomes) == count
    rows = await intent_rows(database_url, list(outcomes))
    assert len(rows) == count
    for intent_id, row in rows.items():
        p = outcomes[intent_id].planned
        assert (row["state"], row["failure_code"]) == demo.EXPECTED[p.scenario], (p, dict(row))
        assert row["amount"] == p.amount
        if p.payer is not None and p.payer.funded and p.scenario == "settles":
            assert row["state"] == "SETTLED"
            stamped = row["fees"] if isinstance(row["fees"], list) else json.loads(row["fees"])
            fees = {f["ruleId"]: f["amount"] for f in stamped}
            assert fees == demo.demo_fees(p.amount), (p, fees)
    assert any(demo.POST_RULE in demo.demo_fees(o.planned.amount) for o in summary.payments())


# -- the demo, in process -----------------------------------------------------------------------------


async def test_demo_settles_funded_payments_fails_the_others_and_the_ledger_agrees(running: Running) -> None:
    revenue_account = [("operator", "fee_revenue", int(chart.Code.FEE_REVENUE))]
    (revenue_before,) = await ledger_posted(running.database_url, revenue_account, "THB")
    options = demo.DemoOptions(users=6, payments=40, concurrency=8, seed=11)
    summary = await demo.run_demo(running.url, running.key_id, running.secret, options)

    assert summary.problems == []
    assert summary.ok
    planned = scenario_counts(summary)
    # 6 % and 4 % of 40, rounded, at least one each; 4 of the 6 users are funded.
    assert planned == {"funding": 4, "unfunded-payer": 2, "no-payee-wallet": 2, "settles": 36}
    assert summary.by_scenario() == {
        ("funding", "SETTLED", ""): 4,
        ("settles", "SETTLED", ""): 36,
        ("unfunded-payer", "FAILED", "INSUFFICIENT_FUNDS"): 2,
        ("no-payee-wallet", "FAILED", "ACCOUNT_NOT_FOUND"): 2,
    }
    assert summary.by_state() == {
        ("ADJUSTMENT", "SETTLED", ""): 4,
        ("P2P", "SETTLED", ""): 36,
        ("P2P", "FAILED", "INSUFFICIENT_FUNDS"): 2,
        ("P2P", "FAILED", "ACCOUNT_NOT_FOUND"): 2,
    }

    # The intent table says the same, intent by intent.
    await assert_intents_as_planned(running.database_url, summary, count=44)

    # Balances straight from the ledger: what the demo read through the gateway, and what the settled
    # intents add up to (computed here again from the plan); nothing left pending.
    users = summary.users
    posted = await ledger_posted(running.database_url, [("user", u.id, 1) for u in users], "THB")
    expected = Counter[str]()
    for o in summary.outcomes:
        if o.state == "SETTLED":
            p = o.planned
            assert p.payee is not None  # this run sends no withdrawals
            expected[p.payee.id] += p.amount
            if p.payer is not None:
                expected[p.payer.id] -= p.amount + sum(demo.demo_fees(p.amount).values())
    assert posted == [expected[u.id] for u in users]
    assert [w.posted for w in summary.wallets] == posted
    assert all(w.pending == 0 for w in summary.wallets)
    assert [w.posted for w in summary.wallets if not w.funded] == [0, 0]
    assert all(w.posted is not None and w.posted > 0 for w in summary.wallets if w.funded)
    # The payee that never had a wallet still has none.
    (ghost,) = {
        o.planned.payee.id
        for o in summary.outcomes
        if o.planned.scenario == "no-payee-wallet" and o.planned.payee is not None
    }
    assert await ledger_posted(running.database_url, [("user", ghost, 1)], "THB") == [None]

    # The fees went to the operator's fee revenue account.
    fees = summary.fees_collected()
    assert fees[demo.PRE_RULE] > 0 and fees[demo.POST_RULE] > 0
    (revenue_after,) = await ledger_posted(running.database_url, revenue_account, "THB")
    assert revenue_before is not None and revenue_after is not None
    assert revenue_after - revenue_before == sum(fees.values())
    assert summary.moved("P2P") == sum(o.planned.amount for o in summary.payments() if o.state == "SETTLED")

    # Both parties of each settled payment, and the funded user of each adjustment, got a history row.
    assert await history_count(running.database_url, [u.id for u in users]) == 2 * 36 + 4

    # Timing figures exist and are sane.
    p50, p95 = summary.latency_ms(0.5), summary.latency_ms(0.95)
    assert p50 is not None and p95 is not None and 0 < p50 <= p95
    assert summary.throughput() > 0
    report = summary.to_json()
    assert report["ok"] is True and report["feesTotal"] == revenue_after - revenue_before


async def test_demo_withdrawals_pay_out_through_promptpay_and_the_wallets_add_up(running: Running) -> None:
    options = demo.DemoOptions(users=5, payments=6, concurrency=4, seed=7, withdrawals=9)
    summary = await demo.run_demo(running.url, running.key_id, running.secret, options)

    assert summary.problems == [] and summary.ok
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


def test_withdrawals_are_thb_only() -> None:
    with pytest.raises(demo.DemoError, match="PromptPay withdrawals pay THB") as refused:
        demo.DemoOptions(currency="USD", withdrawals=1).check()
    assert refused.value.exit_code == 2


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
    options = demo.DemoOptions(users=4, payments=12, concurrency=4, seed=5, run_id=run_id)
    summary = await demo.run_demo(running.url, running.key_id, running.secret, options)

    assert not summary.ok
    limited = [o for o in summary.payments() if o.planned.payer is not None and o.planned.payer.id == capped]
    assert limited, "the seed gives the capped user no payment"
    settles = [o for o in limited if o.planned.scenario == "settles"]
    assert settles and all((o.state, o.failure_code) == ("FAILED", "LIMIT_EXCEEDED") for o in settles)
    for o in settles:
        assert o.intent is not None
        assert any(
            o.intent.id in problem and "got FAILED LIMIT_EXCEEDED" in problem for problem in summary.problems
        )


# -- the command ------------------------------------------------------------------------------------


def pm(*args: str) -> subprocess.CompletedProcess[str]:
    """The `pm` entry point (pyproject: pm_tools.cli.app:main) as a process."""
    script = Path(sys.executable).with_name("pm")
    argv = (
        [str(script)]
        if script.exists()
        else [sys.executable, "-c", "from pm_tools.cli.app import main; main()"]
    )
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=120, check=False)


async def test_pm_demo_command_prints_the_summary_as_json_and_exits_0(running: Running) -> None:
    done = pm(
        "demo",
        "--gateway",
        running.url,
        "--key-id",
        running.key_id,
        "--secret",
        running.secret,
        "--users",
        "5",
        "--payments",
        "12",
        "--concurrency",
        "4",
        "--seed",
        "3",
        "--json",
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["problems"] == []
    counts = {(i["type"], i["state"], i["failureCode"]): i["count"] for i in report["intents"]}
    assert counts == {
        ("ADJUSTMENT", "SETTLED", None): 3,
        ("P2P", "SETTLED", None): 10,
        ("P2P", "FAILED", "INSUFFICIENT_FUNDS"): 1,
        ("P2P", "FAILED", "ACCOUNT_NOT_FOUND"): 1,
        # The command's default in THB: ten withdrawals, one to a number PromptPay does not know.
        ("PROMPTPAY_WITHDRAWAL", "SETTLED", None): 9,
        ("PROMPTPAY_WITHDRAWAL", "FAILED", "PAYEE_INVALID"): 1,
    }
    assert report["moved"]["PROMPTPAY_WITHDRAWAL"] > 0
    assert len(report["wallets"]) == 5 and all(w["ok"] for w in report["wallets"])


async def test_pm_demo_command_prints_tables(running: Running, tmp_path: Path) -> None:
    key_file = tmp_path / "demo-key.json"
    key_file.write_text(json.dumps({"keyId": running.key_id, "secret": running.secret}))
    done = pm(
        "demo", "--gateway", running.url, "--key-file", str(key_file), "--users", "4", "--payments", "5"
    )
    assert done.returncode == 0, done.stderr
    for text in (
        "intents by type and outcome",
        "INSUFFICIENT_FUNDS",
        "ACCOUNT_NOT_FOUND",
        "latency p95",
        "ok: all",
    ):
        assert text in done.stdout, done.stdout


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
    done = pm(
        "demo",
        "--gateway",
        running.url,
        "--key-id",
        running.key_id,
        "--secret",
        running.secret,
        "--currency",
        "RUB",
        "--users",
        "4",
        "--payments",
        "6",
    )
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "LIMIT_EXCEEDED" in done.stdout and "UNEXPECTED" in done.stdout, done.stdout
    assert "did not end as expected" in done.stderr, done.stderr
    assert "got FAILED LIMIT_EXCEEDED" in done.stderr, done.stderr
    # The funding (ADJUSTMENT: no limits) still settled in RUB.
    assert "ADJUSTMENT │ SETTLED" in done.stdout, done.stdout


def test_pm_demo_without_a_gateway_exits_2_saying_so(tmp_path: Path) -> None:
    url = processes.base_url(processes.free_port())
    done = pm("demo", "--gateway", url, "--key-id", "pk_nobody", "--secret", "x", "--payments", "3")
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "does not answer" in done.stderr and url in done.stderr, done.stderr
    missing = pm("demo", "--gateway", url, "--key-file", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "no key file" in missing.stderr, missing.stderr
