"""The saga's batch handlers (docs/saga.md): a batch of messages in, one atomic SQL statement out.

For a batch the saga loads every intent it names, plans what each message does to its intent
(`plan`), gives back limit reservations of intents about to fail, then applies every plan in one
statement (`store.move_many`) and publishes what it wrote to the outbox at once (the outbox relay
sends whatever a crash left behind). A message that cannot be planned fails alone; if the batch's
statement fails, every plan is applied again on its own, so one poisoned intent never fails its
batch-mates.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client import Counter

from pm_orchestrator import plan as planning
from pm_orchestrator import projections, store
from pm_orchestrator.rules import Rules
from pm_orchestrator.states import CREATED
from pm_orchestrator.steps import Context
from pm_shared import logs
from pm_shared.db import DATABASE_ERRORS, Pool
from pm_shared.errors import PermanentError
from pm_shared.intents.record import IntentRow
from pm_shared.ledger import opening
from pm_shared.merchants import closing
from pm_shared.messages import IntentSubmitted, LedgerResult, PspResult
from pm_shared.outbox import Marks, publish_committed
from pm_shared.reconciliation import alerts, repairs
from pm_shared.streams import Delivery, Publisher
from pm_shared.streams.names import LEDGER_COMMANDS

log = logging.getLogger(__name__)

MOVES = Counter(
    "pm_intent_moves_total",
    "Intents moved by the saga, by state reached and failure code.",
    ["to_state", "failure_code"],
)
INTAKE_PAUSED = Counter(
    "pm_saga_intake_paused_seconds_total",
    "Time intake waited for the ledger-writer to drain pm:ledger:commands (back-pressure).",
)
STALE = Counter(
    "pm_saga_stale_total", "Messages that no longer fitted their intent (duplicates, reordered).", ["kind"]
)

ALERTS = alerts.RAISED

OUTSIDE_INTENTS = frozenset({opening.OPEN_STEP, closing.CLOSE_STEP, closing.REOPEN_STEP, repairs.REPAIR_STEP})
"""Steps of ledger commands made outside any intent (their results are no saga's business)."""


class UnknownIntentError(PermanentError):
    """The message names an intent PM has no record of: no retry can change that."""

    reason = "unknown_intent"


class BusyIntentError(Exception):
    """Another message of the same batch moves this intent; this one is retried after that commits."""


@dataclass(frozen=True)
class Job:
    entry_id: str | None
    """The stream entry it came from (None: the resume sweep)."""
    intent_id: str
    message_id: str | None
    result: LedgerResult | None = None
    """None (and no `psp`): take the intent in (intake)."""
    psp: PspResult | None = None


def _uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


class Saga:
    def __init__(
        self,
        pool: Pool,
        publisher: Publisher,
        rules: Rules,
        planner: planning.Planner,
        tier: str,
        *,
        intake_pause_max_s: float = 10.0,
        stop: asyncio.Event | None = None,
        marks: Marks | None = None,
    ) -> None:
        self.pool = pool
        self.publisher = publisher
        self.rules = rules
        self.planner = planner
        self.tier = tier
        self.intake_pause_max_s = intake_pause_max_s
        self.stop = stop
        self.marks = marks
        """Marks published outbox rows in batches; None: one UPDATE after each publish."""

    async def on_intents(self, deliveries: Sequence[Delivery[IntentSubmitted]]) -> dict[str, BaseException]:
        await self.wait_for_ledger_room([d.message.intent_id for d in deliveries])
        jobs = [Job(d.entry_id, d.message.intent_id, d.message.message_id) for d in deliveries]
        return await self.run(jobs)

    async def wait_for_ledger_room(self, intent_ids: Sequence[str]) -> None:
        """Hold intake while the ledger-writer is behind (docs/streams.md: an internal producer stops reading
        its input until the downstream drains), so new intents wait in `pm:intents` — where the
        gateway's back-pressure sees them — rather than as commands the relay must publish later.

        Results keep flowing meanwhile: they finish intents already under way. After
        `intake_pause_max_s` intake goes on regardless (the relay delivers what the stream refuses),
        so a stopped writer never wedges the orchestrator's shutdown.
        """
        keys = {self.publisher.key_for(LEDGER_COMMANDS.name, intent_id) for intent_id in intent_ids}
        # A quarter of the stream's room stays for the settle commands of intents under way.
        reserve = self.publisher.threshold // 4 + len(intent_ids)
        started = time.monotonic()
        for key in sorted(keys):
            while await self.publisher.headroom(key) < reserve:
                if time.monotonic() - started >= self.intake_pause_max_s or (
                    self.stop is not None and self.stop.is_set()
                ):
                    break
                await asyncio.sleep(0.05)
        INTAKE_PAUSED.inc(time.monotonic() - started)

    async def on_results(self, deliveries: Sequence[Delivery[LedgerResult]]) -> dict[str, BaseException]:
        jobs: list[Job] = []
        for d in deliveries:
            result = d.message
            if result.step in OUTSIDE_INTENTS:
                # Accounts opened, a merchant's closed or reopened, a repair: whoever asked watches the
                # ledger; a refusal is logged here, where someone can see it.
                if not result.ok:
                    log.warning("ledger command %s (%s) refused: %s", result.command_id, result.step, result)
                continue
            if result.step == planning.VOID_STEP:
                _check_void(result)
                continue
            jobs.append(Job(d.entry_id, result.intent_id, result.message_id, result))
        return await self.run(jobs)

    async def on_psp_results(self, deliveries: Sequence[Delivery[PspResult]]) -> dict[str, BaseException]:
        jobs = [Job(d.entry_id, d.message.intent_id, d.message.message_id, psp=d.message) for d in deliveries]
        return await self.run(jobs)

    async def run(self, jobs: Sequence[Job]) -> dict[str, BaseException]:
        """Plan and apply `jobs`; returns the failures by entry id (a job without one raises nothing)."""
        failed: dict[str, BaseException] = {}
        keys = _intent_keys(jobs, failed)
        wanted_ids = sorted({key for key in keys if key is not None})
        if not wanted_ids:
            return failed
        async with self.pool.acquire() as conn:
            await self.rules.refresh(conn)
            rows = await store.load_intents(conn, wanted_ids)
            wallets = await store.wallets(conn, _wallets_to_check(jobs, keys, rows))
        ctx = Context(self.rules, frozenset(wallets), self.tier)
        known = [(job, key) for job, key in zip(jobs, keys, strict=True) if key is not None]
        for job, key in known:
            if key not in rows:
                _fail(failed, [job], UnknownIntentError(f"intent {job.intent_id} does not exist"))
        known = [(job, key) for job, key in known if key in rows]
        if len({key for _, key in known}) == len(known):
            plans = await self._plan_apart(ctx, rows, known, failed)
        else:
            plans = await self._plan_in_order(ctx, rows, known, failed)
        failed.update(await self.apply(list(plans.values())))
        return failed

    async def _plan_apart(
        self,
        ctx: Context,
        rows: dict[str, IntentRow],
        known: list[tuple[Job, str]],
        failed: dict[str, BaseException],
    ) -> dict[str, tuple[planning.Plan, list[Job]]]:
        """Plan jobs of distinct intents all at once: what one awaits (its limits' reservation, say)
        goes out with the others' (`pm_shared.pipelined`) instead of one round trip after another."""
        made = await asyncio.gather(*(self._plan(ctx, rows[key], job, failed) for job, key in known))
        return {key: (plan, [job]) for (job, key), plan in zip(known, made, strict=True) if plan is not None}

    async def _plan_in_order(
        self,
        ctx: Context,
        rows: dict[str, IntentRow],
        known: list[tuple[Job, str]],
        failed: dict[str, BaseException],
    ) -> dict[str, tuple[planning.Plan, list[Job]]]:
        """Plan jobs one after the other when some name the same intent: the first that moves it
        wins, and a later one is retried once that has committed."""
        plans: dict[str, tuple[planning.Plan, list[Job]]] = {}
        working = dict(rows)
        for job, key in known:
            intent = working[key]
            plan = await self._plan(ctx, intent, job, failed)
            if plan is None:
                continue
            if key in plans:
                _fail(failed, [job], BusyIntentError(f"intent {key} already moves in this batch"))
                continue
            plans[key] = (plan, [job])
            working[key] = planning.applied(intent, plan)
        return plans

    async def _plan(
        self, ctx: Context, intent: IntentRow, job: Job, failed: dict[str, BaseException]
    ) -> planning.Plan | None:
        """What `job` does to `intent`; None when it does nothing (stale) or failed (then in `failed`)."""
        try:
            if job.psp is not None:
                plan = self.planner.psp_result(intent, job.psp)
            elif job.result is None:
                plan = await self.planner.intake(ctx, intent, job.message_id)
            else:
                plan = self.planner.result(intent, job.result)
        except PermanentError as exc:
            log.error("intent %s: %s", intent.id, exc)
            _fail(failed, [job], exc)
            return None
        except Exception as exc:
            log.exception("planning for intent %s failed", intent.id)
            _fail(failed, [job], exc)
            return None
        if plan is None:
            kind = "psp_result" if job.psp else "intake" if job.result is None else "ledger_result"
            STALE.labels(kind).inc()
        return plan

    async def apply(self, plans: Sequence[tuple[planning.Plan, Sequence[Job]]]) -> dict[str, BaseException]:
        """Give back the limits of failing intents, then apply the plans in one transaction — or, if
        that fails, each in its own, so only the plan at fault fails (its jobs' entries are returned)."""
        failed: dict[str, BaseException] = {}
        ready: list[tuple[planning.Plan, Sequence[Job]]] = []
        for plan, owners in plans:
            if await self._before_move(plan, owners, failed):
                ready.append((plan, owners))
        if not ready:
            return failed
        try:
            await self._apply([p for p, _ in ready])
        except DATABASE_ERRORS as exc:
            if len(ready) == 1:
                _fail(failed, ready[0][1], exc)
                return failed
            log.warning("batch of %d moves failed (%r); applying them one by one", len(ready), exc)
            for plan, owners in ready:
                try:
                    await self._apply([plan])
                except DATABASE_ERRORS as one:
                    logs.failure(log, one, "intent %s: its move failed on its own", plan.intent.id)
                    _fail(failed, owners, one)
        return failed

    async def _before_move(
        self, plan: planning.Plan, owners: Sequence[Job], failed: dict[str, BaseException]
    ) -> bool:
        """Raise the plan's alert and give back its limits, which must happen before the move commits;
        False (and the failure in `failed`) when either could not be done."""
        if plan.alert is not None:
            try:
                await self.raise_alert(plan.intent.id, plan.alert)
            except DATABASE_ERRORS as exc:
                _fail(failed, owners, exc)
                return False
        if plan.release_limits_of is not None:
            try:
                await self.rules.limits.release(intent_id=plan.intent.id, user=plan.release_limits_of)
            except Exception as exc:
                _fail(failed, owners, exc)
                return False
        return True

    async def raise_alert(self, intent_id: str, alert: planning.Alert) -> None:
        # Keyed by the intent: raising it again (the batch retried) adds nothing.
        async with self.pool.acquire() as conn:
            added = await store.insert_alert(conn, alert.kind, intent_id, "intent", intent_id, alert.detail)
        if added:
            ALERTS.labels(alert.kind).inc()

    async def _apply(self, plans: Sequence[planning.Plan]) -> None:
        # One statement, so one round trip and no explicit transaction (see store.move_many).
        settled = projections.of(
            [(p.intent, p.settled_legs) for p in plans if p.settled_legs is not None], datetime.now(UTC)
        )
        async with self.pool.acquire() as conn:
            moved, fresh = await store.move_many(
                conn, [p.move for p in plans], {p.intent.id: p.outgoing for p in plans}, settled
            )
        for p in plans:
            if p.intent.id in moved:
                if p.move.via is not None:
                    MOVES.labels(p.move.via, "").inc()
                MOVES.labels(p.move.to_state, p.move.failure_code or "").inc()
            else:
                STALE.labels("race").inc()
        await publish_committed(self.pool, self.publisher, fresh, self.marks)


def _fail(failed: dict[str, BaseException], jobs: Sequence[Job], exc: BaseException) -> None:
    """Record `exc` as the failure of each job's stream entry (a resumed job has none: it is logged)."""
    for job in jobs:
        if job.entry_id is not None:
            failed[job.entry_id] = exc
        else:
            log.warning("resuming intent %s failed: %r", job.intent_id, exc)


def _intent_keys(jobs: Sequence[Job], failed: dict[str, BaseException]) -> list[str | None]:
    """Per job, its intent id in canonical form; None (and a failure) when it is not a UUID."""
    keys: list[str | None] = []
    for job in jobs:
        parsed = _uuid(job.intent_id)
        keys.append(str(parsed) if parsed is not None else None)
        if parsed is None:
            _fail(failed, [job], UnknownIntentError(f"{job.intent_id!r} is not an intent id"))
    return keys


def _wallets_to_check(
    jobs: Sequence[Job], keys: Sequence[str | None], rows: dict[str, IntentRow]
) -> set[tuple[str, str]]:
    """The (user id, currency) wallets the intents taken in by this batch need."""
    return {
        (side.id, currency)
        for job, key in zip(jobs, keys, strict=True)
        if job.result is None
        and job.psp is None
        and key is not None
        and (row := rows.get(key)) is not None
        and row.state == CREATED
        for side in (row.source, row.target)
        if side.kind == "user" and side.id is not None
        for currency in row.currencies
    }


# What a void may answer without anything being wrong: the authorization is gone either way.
_VOID_FINE = frozenset(
    {
        "CREATED",
        "EXISTS",
        "PENDING_TRANSFER_EXPIRED",
        "PENDING_TRANSFER_ALREADY_VOIDED",
        "PENDING_TRANSFER_NOT_FOUND",
    }
)


def _check_void(result: LedgerResult) -> None:
    bad = [e.status for e in result.transfers if e.status not in _VOID_FINE]
    if result.error is not None or bad:
        # Money may still be held for a failed intent until the pending timeout releases it.
        log.error(
            "void of intent %s not applied: %s",
            result.intent_id,
            result.error or ", ".join(bad),
            extra={"intent_id": result.intent_id},
        )
