"""The resume sweep on the saga's own intents, against real PostgreSQL (a database of this module's
own) and real Redis: what stalled is taken in or sent again, with the same transfers, a bounded number
of times (`World`: see conftest.py)."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest
import tigerbeetle as tb

from pm_orchestrator.plan import Planner
from pm_orchestrator.resume import MAX_RESENDS, Resumer
from pm_orchestrator.states import VALIDATED
from pm_orchestrator.steps import default_registry
from pm_shared.intents.record import IntentRow, Side
from pm_shared.messages import LedgerCommand

if TYPE_CHECKING:
    from .conftest import World

# These tests follow P2P intents through the two phases (authorize, settle, void): P2P on its
# two-phase route. P2P's own route (one round trip) is tested in test_saga_transfer.py.
pytestmark = pytest.mark.usefixtures("two_phase_p2p")


async def test_the_resume_sweep_takes_in_and_resends_what_stalled(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    never_delivered = await world.intent(payer, payee)
    waiting = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(waiting)])
    first = await world.command(waiting, "authorize")
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=30, interval_s=10)

    resumed = await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))

    assert resumed >= 2
    assert (await world.row(never_delivered)).state == VALIDATED
    resent = [c for c in await world.commands(waiting) if c.step == "authorize"]
    assert len(resent) == 2 and resent[1].message_id != first.message_id
    assert resent[1].transfers == first.transfers  # same ids: the ledger applies them at most once
    # A second sweep soon after does not send it again.
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    assert len([c for c in await world.commands(waiting) if c.step == "authorize"]) == 2


async def test_a_command_nobody_answers_is_resent_a_bounded_number_of_times(world: World) -> None:
    payer, payee = (f"u-{secrets.token_hex(4)}" for _ in range(2))
    await world.wallets(payer, payee)
    intent_id = await world.intent(payer, payee)
    await world.saga.on_intents([world.submitted(intent_id)])
    # resume_after_s=0: every sweep finds it stalled again, as if each resend were dead-lettered.
    resumer = Resumer(world.saga, world.planner, world.saga.publisher, resume_after_s=0.0001, interval_s=10)
    for _ in range(MAX_RESENDS + 3):
        await asyncio.sleep(0.001)
        await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    sent = [c for c in await world.commands(intent_id) if c.step == "authorize"]
    assert len(sent) == 1 + MAX_RESENDS  # the first command, then MAX_RESENDS resends, then none
    assert (await world.row(intent_id)).state == VALIDATED
    assert intent_id in resumer._resends
    # Once it moves on, a sweep forgets it (the counts do not pile up for the life of the process).
    await world.pool.execute(
        "UPDATE pm.intent SET state = 'FAILED', failure_code = 'X', step = NULL WHERE id = $1",
        uuid.UUID(intent_id),
    )
    await resumer.sweep(datetime.now(UTC) + timedelta(seconds=1))
    assert intent_id not in resumer._resends


def test_the_command_id_of_a_step_is_stable_and_its_transfers_deterministic() -> None:
    row = IntentRow(
        id=str(uuid.uuid4()), type="P2P", state=VALIDATED, step="authorize", channel="INTERNAL_P2P",
        route=("validate", "authorize", "settle"), amount=100, currency="THB",
        source=Side("user", "a"), target=Side("user", "b"), from_name=None, to_name=None, comment=None,
        requires_monitoring=False,
        metadata={}, fees=(), created_at=datetime.now(UTC), updated_at=datetime.now(UTC),
    )  # fmt: skip
    first = Planner(default_registry(), 60, 30).resend(row)
    second = Planner(default_registry(), 60, 30).resend(row)
    assert first is not None and second is not None
    assert isinstance(first.message, LedgerCommand) and isinstance(second.message, LedgerCommand)
    assert first.stream == second.stream == "pm:ledger:commands"
    assert first.message.transfers == second.message.transfers
    assert first.message.transfers[0].flags == int(tb.TransferFlags.PENDING)  # one leg: no chain
