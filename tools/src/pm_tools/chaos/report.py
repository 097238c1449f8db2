"""What a chaos run reports: intents by terminal state, DLQ moves, reclaims, back-pressure refusals,
the longest time to terminal, what was done to the fleet, and every invariant with its offenders."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rich.table import Table

SHOWN_OFFENDERS = 20


@dataclass
class Report:
    seed: int
    planned: int
    accepted: int = 0
    intents_in_db: int = 0
    by_state: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    """(type, state, failure code or "") → intents."""
    dlq: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(DLQ key, reason) → records (the DLQ moves of the run)."""
    dlq_explained: dict[str, str] = field(default_factory=dict)
    reclaims: Counter[str] = field(default_factory=Counter)
    """Stream key → entries reclaimed from idle consumers (pm_stream_claimed_total over every process)."""
    backpressure: int = 0
    """503 back-pressure answers the load got (each request then sent again with the same key)."""
    backpressure_internal: int = 0
    """Publishes refused under back-pressure inside the fleet (pm_stream_backpressure_rejections_total)."""
    unavailable: int = 0
    connection_errors: int = 0
    retried: int = 0
    refused: list[str] = field(default_factory=list)
    server_errors: list[str] = field(default_factory=list)
    longest_to_terminal_s: float | None = None
    longest_intent: str | None = None
    p50_to_terminal_s: float | None = None
    p99_to_terminal_s: float | None = None
    actions: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    kills: Counter[str] = field(default_factory=Counter)
    redis_restarts: int = 0
    postgres_restarts: int = 0
    load_s: float = 0.0
    quiet_s: float = 0.0
    total_s: float = 0.0
    quiesced: bool = False
    invariants: dict[str, dict[str, str]] = field(default_factory=dict)
    accounts_checked: Counter[str] = field(default_factory=Counter)
    """Owner kind (`user`, `merchant`, `liquidity`) → the accounts whose balances the invariants held to
    the intents."""
    workdir: str = ""

    @property
    def ok(self) -> bool:
        return not any(self.invariants.values())

    @property
    def failed(self) -> dict[str, dict[str, str]]:
        return {name: offenders for name, offenders in self.invariants.items() if offenders}

    def offending_ids(self) -> list[str]:
        return sorted({i for offenders in self.invariants.values() for i in offenders})

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seed": self.seed,
            "planned": self.planned,
            "accepted": self.accepted,
            "intentsInDatabase": self.intents_in_db,
            "byState": [
                {"type": t, "state": s, "failureCode": c or None, "count": n}
                for (t, s, c), n in sorted(self.by_state.items())
            ],
            "dlqMoves": [{"dlq": k, "reason": r, "count": n} for (k, r), n in sorted(self.dlq.items())],
            "dlqExplained": self.dlq_explained,
            "reclaims": dict(self.reclaims),
            "reclaimsTotal": sum(self.reclaims.values()),
            "backpressureRefusals": self.backpressure,
            "backpressureInternal": self.backpressure_internal,
            "unavailable": self.unavailable,
            "connectionErrors": self.connection_errors,
            "retriedRequests": self.retried,
            "refused": self.refused,
            "serverErrors": self.server_errors,
            "longestToTerminalS": self.longest_to_terminal_s,
            "longestIntent": self.longest_intent,
            "p50ToTerminalS": self.p50_to_terminal_s,
            "p99ToTerminalS": self.p99_to_terminal_s,
            "kills": dict(self.kills),
            "redisRestarts": self.redis_restarts,
            "postgresRestarts": self.postgres_restarts,
            "actions": self.actions,
            "crashes": self.crashes,
            "loadS": round(self.load_s, 1),
            "quiescenceS": round(self.quiet_s, 1),
            "totalS": round(self.total_s, 1),
            "quiesced": self.quiesced,
            "invariants": [
                {"name": name, "holds": not offenders, "offenders": offenders}
                for name, offenders in self.invariants.items()
            ],
            "accountsChecked": dict(self.accounts_checked),
            "workdir": self.workdir,
        }

    def tables(self) -> list[Table]:
        title = f"pm chaos --seed {self.seed}: {self.accepted} intents accepted of {self.planned} planned"
        states = Table(title=title)
        for column in ("type", "state", "failure code", "count"):
            states.add_column(column, justify="right" if column == "count" else "left")
        for (type_, state, code), n in sorted(self.by_state.items()):
            states.add_row(type_, state, code or "-", str(n))

        figures = Table(title="What the fleet went through", show_header=False)
        figures.add_column("figure")
        figures.add_column("value", justify="right")
        kills = ", ".join(f"{s} ×{n}" for s, n in sorted(self.kills.items())) or "none"
        figures.add_row("SIGKILLs (and restarts)", f"{sum(self.kills.values())}: {kills}")
        figures.add_row("Redis restarts (AOF)", str(self.redis_restarts))
        figures.add_row("PostgreSQL restarts", str(self.postgres_restarts))
        figures.add_row("crashes (exits nobody asked for)", str(len(self.crashes)))
        dlq = ", ".join(f"{k} {r} ×{n}" for (k, r), n in sorted(self.dlq.items())) or "none"
        figures.add_row("DLQ moves", f"{sum(self.dlq.values())}: {dlq}")
        for record, why in list(self.dlq_explained.items())[:SHOWN_OFFENDERS]:
            figures.add_row(f"  {record}", f"explained: {why}")
        reclaims = ", ".join(f"{k} ×{n}" for k, n in sorted(self.reclaims.items()) if n) or "none"
        figures.add_row("reclaims", f"{sum(self.reclaims.values())}: {reclaims}")
        figures.add_row(
            "balances checked (wallets / merchant / liquidity accounts)",
            " / ".join(str(self.accounts_checked[kind]) for kind in ("user", "merchant", "liquidity")),
        )
        figures.add_row("back-pressure refusals (503 to the load)", str(self.backpressure))
        figures.add_row("back-pressure inside the fleet", str(self.backpressure_internal))
        figures.add_row("spurious 500 / 401 answers (resent; findings)", str(len(self.server_errors)))
        figures.add_row(
            "503 unavailable / no answer (resent, same key)", f"{self.unavailable} / {self.connection_errors}"
        )
        longest = (
            "-"
            if self.longest_to_terminal_s is None
            else f"{self.longest_to_terminal_s:.1f} s ({self.longest_intent})"
        )
        figures.add_row("longest time to terminal", longest)
        if self.p50_to_terminal_s is not None and self.p99_to_terminal_s is not None:
            figures.add_row(
                "time to terminal p50 / p99",
                f"{self.p50_to_terminal_s:.2f} s / {self.p99_to_terminal_s:.2f} s",
            )
        figures.add_row(
            "load / quiescence / whole run",
            f"{self.load_s:.1f} s / {self.quiet_s:.1f} s / {self.total_s:.1f} s",
        )

        checks = Table(title="Invariants (docs/invariants.md)")
        for column in ("invariant", "holds", "offenders"):
            checks.add_column(column)
        for name, offenders in self.invariants.items():
            shown = ", ".join(list(offenders)[:3]) + (" …" if len(offenders) > 3 else "")
            checks.add_row(name, "yes" if not offenders else f"NO ({len(offenders)})", shown or "-")
        return [states, figures, checks]

    def problems(self) -> list[str]:
        """One line per offender (at most SHOWN_OFFENDERS per invariant), for stderr."""
        lines: list[str] = []
        for name, offenders in self.failed.items():
            for offender, why in list(offenders.items())[:SHOWN_OFFENDERS]:
                lines.append(f"{name}: {offender}: {why}")
            if len(offenders) > SHOWN_OFFENDERS:
                lines.append(f"{name}: … and {len(offenders) - SHOWN_OFFENDERS} more")
        return lines
