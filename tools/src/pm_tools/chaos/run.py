"""One chaos run, start to finish: private servers, the fleet, load and chaos together, quiescence,
the invariants, the report; everything it started is stopped, pass or fail."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import secrets
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from redis.asyncio import Redis

from pm_shared import db, streams
from pm_shared.fleet import (
    GATEWAY,
    IPPS_SANDBOX,
    LEDGER_WRITER,
    ORCHESTRATOR,
    QP_SANDBOX,
    SANDBOXES,
    SERVICES,
)
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.streams.connection import connect
from pm_tools.chaos import facts as read
from pm_tools.chaos import recon
from pm_tools.chaos.fleet import Fleet, Slot, slot_name
from pm_tools.chaos.invariants import check_all, expected_balances, explain_dead_letter
from pm_tools.chaos.load import Plan, plan
from pm_tools.chaos.report import Report
from pm_tools.chaos.rows import Facts
from pm_tools.chaos.schedule import Action, schedule
from pm_tools.chaos.send import (
    LoadStats,
    Senders,
    client,
    open_shop,
    open_wallets,
    request_until,
    send_all,
    user_side,
)
from pm_tools.chaos.servers import ChaosPostgres, ChaosRedis, ServersUnavailable, prepare_dir
from pm_tools.devenv.envfile import new_key_encryption_key

LEASE_MS = 4_000
# Recovery timers shorter than production (as tests/test_saga.py and tests/test_psp.py use), so the
# work of a SIGKILLed process is taken over within seconds: reclaim after the lease, the writer's
# lease, the orchestrator's resume sweep and DLQ review, the IPPS adapter's conclusions.
RECOVERY_ENV: dict[str, str] = {
    "PM_STREAM_LEASE_MS": str(LEASE_MS),
    "PM_STREAM_CLAIM_INTERVAL_MS": "1000",
    "PM_ORCHESTRATOR_RESUME_AFTER_S": "8",
    "PM_ORCHESTRATOR_RESUME_INTERVAL_S": "2",
    "PM_ORCHESTRATOR_DEAD_LETTER_REVIEW_S": "1",
    "PM_LEDGER_WRITER_LEASE_MS": "3000",
    "PM_ADAPTER_IPPS_REQUEST_TIMEOUT_MS": "1500",
    "PM_ADAPTER_IPPS_POLL_INITIAL_MS": "100",
    "PM_ADAPTER_IPPS_POLL_MAX_MS": "400",
    "PM_ADAPTER_IPPS_POLL_ATTEMPTS": "4",
    "PM_ADAPTER_IPPS_SWEEP_INTERVAL_MS": "500",
    "PM_ADAPTER_IPPS_NOT_EXECUTED_AFTER_S": "0.5",
    "PM_ADAPTER_QP_SWEEP_INTERVAL_MS": "300",
    "PM_IPPS_SANDBOX_HANG_S": "3",
    "PM_IPPS_SANDBOX_PENDING_MS": "300",
    "PM_IPPS_SANDBOX_INQUIRY_TTL_S": "2",
    "PM_QP_SANDBOX_AUTO_PAY": "accept",
    "PM_QP_SANDBOX_AUTO_PAY_DELAY_MS": "300",
    # A quote outlives every resend of its exchange (send.REQUEST_DEADLINE_S), outages included.
    "PM_FX_QUOTE_TTL_S": "600",
}
REPLICAS = {ORCHESTRATOR: 2, LEDGER_WRITER: 2}
"""Two orchestrators share the work; two ledger writers, one active and one standing by."""
FUNDING_TIMEOUT_S = 60.0
RULES_SETTLE_S = 2.0
"""The orchestrator reloads fee rules every second."""
FINAL_REVIEW_S = 2.5
"""After quiescence: one more DLQ review by the orchestrator (every second here) before reading."""


@dataclass
class ChaosOptions:
    seed: int = 1
    intents: int = 1_000
    kills: int = 9
    redis_restarts: int = 1
    postgres_restarts: int = 1
    postgres_down_s: float = 3.0
    """How long PostgreSQL stays stopped at each of its restarts."""
    concurrency: int = 16
    rate: float = 20.0
    """New intents offered per second (open loop), so the chaos spans the load."""
    quiesce_timeout_s: float = 120.0
    keep: bool = False
    progress: Callable[[str], None] | None = None


def slots() -> list[Slot]:
    """Every member of the roster in a slot of its own, two of those in `REPLICAS`."""
    out: list[Slot] = []
    for member in (*SANDBOXES, *SERVICES):
        replicas = REPLICAS.get(member)
        if replicas is None:
            out.append(Slot(slot_name(member), member))
        else:
            out += [Slot(slot_name(member, n), member) for n in range(1, replicas + 1)]
    return out


WRITER_SLOTS = tuple(slot_name(LEDGER_WRITER, n) for n in range(1, REPLICAS[LEDGER_WRITER] + 1))


class ChaosRun:
    def __init__(self, options: ChaosOptions) -> None:
        self.options = options
        self.report = Report(seed=options.seed, planned=max(options.intents, 20))
        self.started = time.monotonic()
        self.workdir = prepare_dir(Path(tempfile.mkdtemp(prefix=f"pm-chaos-{options.seed}-")))
        self.report.workdir = str(self.workdir)
        self.redis_server: ChaosRedis | None = None
        self.postgres: ChaosPostgres | None = None
        self.fleet: Fleet | None = None
        self.redis: Redis | None = None
        self.incidents: dict[str, str] = {}
        self.stats = LoadStats()
        # The front door's secret for this run: the load speaks for users at /v1/me with it.
        self.proxy_secret = secrets.token_urlsafe(32)

    def say(self, message: str) -> None:
        if self.options.progress is not None:
            self.options.progress(f"[{time.monotonic() - self.started:6.1f}s] {message}")

    # -- setting up ------------------------------------------------------------------------------

    async def start_servers(self) -> None:
        self.redis_server = ChaosRedis.find(self.workdir / "redis")
        self.postgres = await ChaosPostgres.find(self.workdir / "pg")
        await self.redis_server.start()
        await self.postgres.start()
        self.say(
            f"private Redis on {self.redis_server.port} (AOF always), PostgreSQL on {self.postgres.port}"
        )
        await db.ensure_database(self.postgres.url)
        await db.migrate(self.postgres.url)
        self.redis = connect(self.redis_server.url)
        await streams.provision(self.redis, 1)

    async def start_fleet(self) -> tuple[str, str, str]:
        """Start every member; returns (gateway URL, admin key id, its secret)."""
        assert self.redis_server is not None and self.postgres is not None
        kek = new_key_encryption_key()
        conn = await db.connect(self.postgres.url)
        try:
            key, secret = await create_key(
                conn,
                Cipher.from_setting(kek),
                permissions=Permissions(operations=frozenset({"*"}), owners=None, admin=True),
                description="pm chaos",
            )
        finally:
            await conn.close()
        # Secrets of this run only; each side of a callback, and QP's bearer token, get the same one.
        qp_secret, ipps_callback_secret = secrets.token_hex(16), secrets.token_hex(16)
        env = {
            **RECOVERY_ENV,
            "PM_REDIS_URL": self.redis_server.url,
            "PM_DATABASE_URL": self.postgres.url,
            "PM_KEY_ENCRYPTION_KEY": kek,
            "PM_QP_SANDBOX_SECRET": qp_secret,
            "PM_ADAPTER_QP_QP_SECRET": qp_secret,
            "PM_IPPS_SANDBOX_CALLBACK_SECRET": ipps_callback_secret,
            "PM_GATEWAY_IPPS_CALLBACK_SECRET": ipps_callback_secret,
            "PM_GATEWAY_QP_CALLBACK_SECRET": qp_secret,
            "PM_GATEWAY_PROXY_SECRET": self.proxy_secret,
        }
        fleet = self.fleet = Fleet(slots(), env, self.workdir)
        gateway = fleet.url(GATEWAY.name)
        fleet.env.update(
            {
                "PM_IPPS_SANDBOX_CALLBACK_URL": gateway + "/v1/webhooks/ipps",
                "PM_QP_SANDBOX_CALLBACK_URL": gateway + "/v1/webhooks/qp",
                "PM_ADAPTER_IPPS_IPPS_URL": fleet.url(IPPS_SANDBOX.name),
                "PM_ADAPTER_QP_QP_URL": fleet.url(QP_SANDBOX.name),
                "PM_RECONCILER_IPPS_URL": fleet.url(IPPS_SANDBOX.name),
                "PM_RECONCILER_QP_URL": fleet.url(QP_SANDBOX.name),
                "PM_RECONCILER_QP_SECRET": qp_secret,
            }
        )
        for slot in fleet.running:
            fleet.spawn(slot)
        await asyncio.gather(*(fleet.wait_ready(slot) for slot in fleet.running))
        await self._active_writer()
        fleet.watch()
        self.say(f"fleet up: {', '.join(fleet.running)}; gateway {gateway}")
        return gateway, key.key_id, secret

    async def _active_writer(self, timeout: float = 30.0) -> str:
        assert self.fleet is not None
        deadline = time.monotonic() + timeout
        while True:
            for slot in WRITER_SLOTS:
                if await self.fleet.ready(slot):
                    return slot
            if time.monotonic() > deadline:
                raise RuntimeError(f"no active ledger writer after {timeout:g}s")
            await asyncio.sleep(0.1)

    # -- chaos -----------------------------------------------------------------------------------

    async def act(self, action: Action) -> None:
        assert self.fleet is not None and self.redis_server is not None and self.postgres is not None
        if action.kind == "kill":
            slot = action.target
            if slot == LEDGER_WRITER.name:
                slot = await self._active_writer()
            pid = await self.fleet.kill(slot)
            await asyncio.sleep(action.pause_s)
            self.fleet.spawn(slot)
            await self.fleet.wait_ready(slot)
            self.report.kills[self.fleet.running[slot].slot.member.name] += 1
            what = f"SIGKILL {slot} (pid {pid}), restarted after {action.pause_s:.1f}s and ready"
        elif action.kind == "redis":
            down = await self.redis_server.restart()
            self.report.redis_restarts += 1
            what = f"Redis restarted (SIGTERM, AOF always), down {down:.1f}s"
        else:
            down = await self.postgres.restart(self.options.postgres_down_s)
            self.report.postgres_restarts += 1
            what = f"PostgreSQL stopped (pg_ctl stop -m fast) and started again, down {down:.1f}s"
        line = f"{time.monotonic() - self.started:.1f}s, {len(self.stats.accepted)} accepted: {what}"
        self.report.actions.append(line)
        self.say(what)

    async def chaos(self, actions: list[Action], loaded: asyncio.Event, before: int, planned: int) -> None:
        """Each action once `at` of the `planned` intents after the first `before` are accepted."""
        for action in actions:
            while len(self.stats.accepted) - before < action.at * planned and not loaded.is_set():
                await asyncio.sleep(0.05)
            try:
                await self.act(action)
            except Exception as exc:
                key = f"{action.describe()} at {len(self.stats.accepted)} accepted"
                self.incidents[key] = f"{type(exc).__name__}: {exc}"
                self.say(f"{key}: FAILED {exc}")

    # -- the run -----------------------------------------------------------------------------------

    async def set_up(self, http: httpx.AsyncClient, the_plan: Plan) -> tuple[str, str]:
        """Fee rules, the exchange rate, wallets and the merchant with its mini-app: the merchant key's
        id and secret."""
        for rule in the_plan.fee_rules:
            await request_until(http, "POST", "/v1/admin/fee-rules", rule, frozenset({201}))
        for rate in the_plan.rates:
            await request_until(http, "POST", "/v1/admin/fx/rates", rate, frozenset({201}))
        rules_at = time.monotonic()
        await open_wallets(http, the_plan.thb_users, "THB")
        await open_wallets(http, the_plan.rub_users, "RUB")
        await open_wallets(http, the_plan.usd_users, "USD")
        merchant = await open_shop(http, the_plan.shop)
        await asyncio.sleep(max(0.0, rules_at + RULES_SETTLE_S - time.monotonic()))
        return merchant

    async def load_and_chaos(self, gateway: str, key_id: str, secret: str) -> None:
        opts = self.options
        the_plan = plan(opts.seed, opts.intents, secrets.token_hex(3))
        actions = schedule(opts.seed, opts.kills, opts.redis_restarts, opts.postgres_restarts)
        connections = opts.concurrency + 8
        async with client(gateway, key_id, secret, connections=connections) as http:
            merchant_key, merchant_secret = await self.set_up(http, the_plan)
            async with (
                client(gateway, merchant_key, merchant_secret, connections=connections) as shop,
                user_side(gateway, self.proxy_secret, connections=connections) as users,
            ):
                senders = Senders(http, shop, users)
                began = time.monotonic()
                await send_all(senders, the_plan.funding, opts.concurrency, self.stats, opts.seed)
                await self.settled(FUNDING_TIMEOUT_S)
                funded = len(self.stats.accepted)
                self.say(
                    f"{len(the_plan.thb_users)} THB, {len(the_plan.rub_users)} RUB and "
                    f"{len(the_plan.usd_users)} USD wallets open, "
                    f"merchant {the_plan.shop.merchant_id} onboarded, {len(the_plan.fee_rules)} fee rules, "
                    f"{funded} funded; sending {len(the_plan.intents)} intents at {opts.rate:g}/s with "
                    f"{len(actions)} chaos actions"
                )
                await self.under_chaos(senders, the_plan, actions, funded)
            self.report.load_s = time.monotonic() - began
            self.say(f"load done in {self.report.load_s:.1f}s: {len(self.stats.accepted)} accepted")

    async def under_chaos(self, senders: Senders, the_plan: Plan, actions: list[Action], funded: int) -> None:
        """The planned intents at the run's rate, while the chaos actions happen."""
        opts = self.options
        loaded = asyncio.Event()

        def on_accept(n: int) -> None:
            if n % 100 == 0:
                self.say(f"{n} intents accepted")

        async def load() -> None:
            try:
                await send_all(
                    senders, the_plan.intents, opts.concurrency, self.stats, opts.seed, on_accept, opts.rate
                )
            finally:
                loaded.set()

        await asyncio.gather(load(), self.chaos(actions, loaded, funded, len(the_plan.intents)))

    async def settled(self, timeout: float) -> None:
        """Wait until no intent is open (the funding, before the chaos starts)."""
        assert self.postgres is not None
        deadline = time.monotonic() + timeout
        while await read.open_intents(self.postgres.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"the funding intents did not all end within {timeout:g}s")
            await asyncio.sleep(0.2)

    async def quiesce(self) -> None:
        assert self.postgres is not None and self.redis is not None
        began = time.monotonic()
        deadline = began + self.options.quiesce_timeout_s
        last = ""
        while True:
            try:
                open_ = await read.open_intents(self.postgres.url)
                held = await read.held_transfers(self.postgres.url)
                pending = len(await read.pending_entries(self.redis))
            except Exception as exc:  # a server still coming back: ask again
                open_, held, pending, last = -1, -1, -1, repr(exc)
            if (open_, held, pending) == (0, 0, 0):
                self.report.quiesced = True
                break
            state = f"{open_} intents open, {held} transfers held, {pending} entries pending"
            if state != last:
                self.say(f"waiting for quiescence: {state}")
                last = state
            if time.monotonic() > deadline:
                self.say(f"not quiet after {self.options.quiesce_timeout_s:g}s: {state}")
                break
            await asyncio.sleep(0.5)
        self.report.quiet_s = time.monotonic() - began
        await asyncio.sleep(FINAL_REVIEW_S)

    async def judge(self) -> None:
        assert self.postgres is not None and self.redis is not None and self.fleet is not None
        facts: Facts = await read.read_all(self.postgres.url, self.redis, self.fleet.url(IPPS_SANDBOX.name))
        r = self.report
        killed = set(r.kills) | {
            m.slot.member.name for m in self.fleet.running.values() if m.crashes and not m.slot.sandbox
        }
        r.crashes = [
            f"{slot} exited by itself with code {code}"
            for slot, m in self.fleet.running.items()
            for code in m.crashes
        ]
        accepted_ids = {a.intent_id for a in self.stats.accepted}
        r.accepted = len(accepted_ids)
        r.intents_in_db = len(facts.intents)
        r.by_state = Counter((i.type, i.state, i.failure_code or "") for i in facts.intents.values())
        r.dlq = Counter((d.dlq, d.reason) for d in facts.dead_letters)
        for letter in facts.dead_letters:
            why = explain_dead_letter(letter, facts.intents, facts.alerts, facts.psp, killed)
            if why is not None:
                r.dlq_explained[f"{letter.dlq} {letter.entry_id}"] = why
        counters = await self.fleet.counters()
        lost: dict[str, str] = {}
        for (name, stream), value in counters.items():
            if name == "pm_stream_claim_deleted_total" and value:
                lost[stream] = f"{value} pending entries trimmed or deleted before they were acked"
            elif name == "pm_stream_claimed_total":
                r.reclaims[stream] += value
            elif name == "pm_stream_backpressure_rejections_total":
                r.backpressure_internal += value
        r.backpressure = self.stats.backpressure
        r.unavailable = self.stats.unavailable
        r.connection_errors = self.stats.connection_errors
        r.retried = self.stats.retried
        r.refused = list(self.stats.refused)
        durations = {
            i.id: (i.terminal_at - i.created_at).total_seconds()
            for i in facts.intents.values()
            if i.terminal_at is not None and i.created_at is not None
        }
        if durations:
            r.longest_intent, r.longest_to_terminal_s = max(durations.items(), key=lambda kv: kv[1])
            ordered = sorted(durations.values())
            r.p50_to_terminal_s = statistics.median(ordered)
            r.p99_to_terminal_s = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        r.invariants = check_all(facts, lease_ms=LEASE_MS, killed=killed)
        # Every mapped wallet and merchant account, and each liquidity account the intents moved.
        moved = expected_balances(facts.intents.values())
        r.accounts_checked = Counter(kind for kind, _, _ in {*facts.owned, *moved})
        missing = accepted_ids - set(facts.intents)
        r.invariants["every accepted intent in the database"] = {i: "answered 202, no row" for i in missing}
        r.invariants["no entry trimmed before its ack"] = lost
        r.server_errors = [self.with_cause(line) for line in self.stats.server_errors]
        r.invariants["no valid request refused (500, nonce called replayed)"] = {
            line.split(" ", 1)[0]: line for line in r.server_errors
        }
        r.invariants["every planned intent accepted"] = {
            line.split(" ", 1)[0]: line for line in self.stats.refused
        }
        r.invariants["the fleet recovered from every chaos action"] = dict(self.incidents)
        r.invariants["the reconciler finds nothing wrong"] = await recon.verdict(
            self.postgres.url, self.redis
        )

    def with_cause(self, line: str) -> str:
        """`line` (a spurious answer) followed by the exception the gateway logged for that request,
        so a failed run says why without its directory (which is removed)."""
        found = re.search(r"request ([0-9a-f]{8,})", line)
        if found is None:
            return line
        cause = gateway_error(self.workdir, found.group(1))
        return line if cause is None else f"{line} — gateway: {cause}"

    async def close(self) -> None:
        if self.fleet is not None:
            await self.fleet.stop()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()
        if self.redis_server is not None:
            await self.redis_server.stop()
        if self.postgres is not None:
            await self.postgres.stop()
        if not self.options.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    async def run(self) -> Report:
        try:
            try:
                await self.start_servers()
                gateway, key_id, secret = await self.start_fleet()
            except ServersUnavailable:
                raise
            except Exception as exc:
                raise ServersUnavailable(f"the fleet could not start: {type(exc).__name__}: {exc}") from exc
            await self.load_and_chaos(gateway, key_id, secret)
            await self.quiesce()
            await self.judge()
        finally:
            self.report.total_s = time.monotonic() - self.started
            await self.close()
        return self.report


async def run_chaos(options: ChaosOptions) -> Report:
    """Run once; raises ServersUnavailable when Redis or PostgreSQL programs are missing."""
    return await ChaosRun(options).run()


def gateway_error(workdir: Path, request_id: str) -> str | None:
    """The last line of the exception the gateway logged for `request_id`, if it logged one."""
    marker = f"(request {request_id})"
    for log_file in sorted(workdir.glob("gateway*.log")):
        with log_file.open(encoding="utf-8", errors="replace") as lines:
            for text in lines:
                if marker not in text:
                    continue
                try:
                    record = json.loads(text)
                except ValueError:
                    continue
                exc = str(record.get("exc") or "").strip()
                if exc:
                    return exc.splitlines()[-1]
    return None


__all__ = ["ChaosOptions", "Report", "ServersUnavailable", "run_chaos"]
