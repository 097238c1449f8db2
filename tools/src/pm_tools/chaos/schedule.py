"""The seeded chaos schedule: which process is SIGKILLed when, and when Redis and PostgreSQL restart.

Actions are placed by the load's progress (a fraction of the planned intents accepted), not by the
clock, so the same seed does the same things in the same order on a fast or a slow machine. The
kills first go round every killable service in a seeded order, then pick at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from pm_shared.fleet import ADAPTER_IPPS, ADAPTER_QP, GATEWAY, LEDGER_WRITER, ORCHESTRATOR, RECONCILER
from pm_tools.chaos.fleet import slot_name

# What may be SIGKILLed, in the order the seeded shuffle starts from (a seed's schedule depends on
# it). `ledger-writer` means the active writer at that moment; the PSP sandboxes stand in for
# outside PSPs (their state is in memory) and are never killed.
KILLABLE: tuple[str, ...] = (
    slot_name(ORCHESTRATOR, 1),
    slot_name(LEDGER_WRITER),
    slot_name(ADAPTER_IPPS),
    slot_name(GATEWAY),
    slot_name(ORCHESTRATOR, 2),
    slot_name(ADAPTER_QP),
    slot_name(RECONCILER),
)


@dataclass(frozen=True)
class Action:
    at: float
    """Fraction of the planned intents accepted when it happens (0..1)."""
    kind: Literal["kill", "redis", "postgres"]
    target: str = ""
    pause_s: float = 0.0
    """For a kill: how long the slot stays dead before it is started again."""

    def describe(self) -> str:
        if self.kind == "kill":
            return f"SIGKILL {self.target}, restart after {self.pause_s:.1f}s"
        return (
            "restart Redis (SIGTERM, AOF)" if self.kind == "redis" else "stop and start PostgreSQL (-m fast)"
        )


def schedule(seed: int, kills: int, redis_restarts: int = 1, postgres_restarts: int = 1) -> list[Action]:
    rng = random.Random(f"chaos-schedule-{seed}")
    order = list(KILLABLE)
    rng.shuffle(order)
    targets = [order[i] if i < len(order) else rng.choice(KILLABLE) for i in range(kills)]
    kinds: list[tuple[Literal["kill", "redis", "postgres"], str]] = [("kill", t) for t in targets]
    kinds += [("redis", "") for _ in range(redis_restarts)]
    kinds += [("postgres", "") for _ in range(postgres_restarts)]
    rng.shuffle(kinds)
    count = len(kinds)
    actions: list[Action] = []
    for index, (kind, target) in enumerate(kinds):
        # Spread over 10 %..85 % of the load, each in its own slice, jittered within it.
        low = 0.10 + 0.75 * index / max(count, 1)
        high = 0.10 + 0.75 * (index + 1) / max(count, 1)
        at = rng.uniform(low, (low + high) / 2)
        pause = round(rng.uniform(0.2, 2.0), 1) if kind == "kill" else 0.0
        actions.append(Action(at, kind, target, pause))
    return actions
