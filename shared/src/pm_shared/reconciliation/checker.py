"""Checking many terminal intents against the ledger at once: one batched `lookup_transfers` per
8,189 ids for their legs, and a second only for the few intents that differ (their corrections, and a
settled one's voids)."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import tigerbeetle as tb

from pm_shared.db import Conn
from pm_shared.intents.legs import LegError
from pm_shared.intents.record import IntentRow
from pm_shared.ledger.api import BATCH_MAX, Ledger
from pm_shared.reconciliation import queries, verify
from pm_shared.reconciliation.verify import Finding

log = logging.getLogger(__name__)


@dataclass
class Checked:
    """The result of checking a set of intents."""

    findings: list[Finding] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    """The intents checked (their alerts of other kinds can be resolved)."""
    transfers: int = 0
    """Transfer ids looked up."""


async def load(conn: Conn, intent_ids: Sequence[str]) -> list[IntentRow]:
    return [IntentRow.from_record(r) for r in await conn.fetch(queries.SELECT_INTENTS, list(intent_ids))]


async def lookup(ledger: Ledger, ids: Sequence[int]) -> dict[int, tb.Transfer]:
    found: dict[int, tb.Transfer] = {}
    for start in range(0, len(ids), BATCH_MAX):
        for transfer in await ledger.lookup_transfers(list(ids[start : start + BATCH_MAX])):
            found[transfer.id] = transfer
    return found


def now_ns() -> int:
    return time.time_ns()


async def check(ledger: Ledger, intents: Sequence[IntentRow], now: int | None = None) -> Checked:
    """Every terminal intent of `intents` against the ledger (others are skipped)."""
    at = now_ns() if now is None else now
    out = Checked()
    plans: list[verify.Expected] = []
    for intent in intents:
        if intent.state not in (verify.SETTLED, verify.FAILED):
            continue
        try:
            plans.append(verify.expected(intent))
        except LegError as exc:  # a party with no account: it never reached the ledger
            log.warning("intent %s: no legs to check: %s", intent.id, exc)
    ids = [i for plan in plans for i in plan.ids()]
    found = await lookup(ledger, ids)
    out.transfers = len(ids)
    again: list[verify.Expected] = []
    for plan in plans:
        findings = verify.check(plan, found, at)
        if findings:  # looked at again with its corrections (and a settled one's voids)
            again.append(plan)
            continue
        out.checked.append(plan.intent.id)
    if again:
        more = [i for plan in again for i in plan.more_ids()]
        out.transfers += len(more)
        merged = found | await lookup(ledger, more)
        for plan in again:
            out.findings.extend(verify.check(plan, merged, at))
            out.checked.append(plan.intent.id)
    return out
