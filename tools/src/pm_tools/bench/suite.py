"""`pm bench`'s run: which benchmarks, with what options, what each shows and adds to the report.

Each benchmark is a step the caller runs in an event loop of its own, one after the other
(`steps`), then `record` makes the report's `model.BenchRun` of the sections they measured.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from pm_tools.bench import (
    charges,
    fees,
    front_door,
    fx,
    gateway,
    ledger,
    model,
    psp,
    recon,
    saga,
    streams,
    webhooks,
)

# Read before `Options` names its fields after the modules.
RATES, PSP_INTENTS, PSP_LATENCY_MS = saga.RATES, psp.INTENTS_DEFAULT, psp.LATENCY_MS
RECON_INTENTS = recon.INTENTS
WEBHOOK_DELIVERIES = webhooks.DELIVERIES


@dataclass(frozen=True)
class Options:
    """What to measure, and how much (`pm bench`'s options)."""

    messages: int = 40_000
    repeat: int = 3
    ledger: bool = True
    transfers: int = 100_000
    ledger_url: str | None = None
    """A real TigerBeetle cluster to measure beside the embedded engine (`--ledger-url`)."""
    gateway: bool = True
    concurrency: int = 32
    seconds: float = 5.0
    saga: bool = True
    intents: int = 20_000
    rates: tuple[float, ...] = RATES
    orchestrators: int = 1
    psp: bool = True
    psp_intents: int = PSP_INTENTS
    psp_latency_ms: int = PSP_LATENCY_MS
    charges: bool = True
    fx: bool = True
    front_door: bool = True
    recon: bool = True
    recon_intents: int = RECON_INTENTS
    webhooks: bool = True
    webhook_deliveries: int = WEBHOOK_DELIVERIES
    fees: bool = True
    quick: bool = False

    def settings(self) -> dict[str, str | int | float | bool]:
        """The options as the report records them (0 or empty: the benchmark did not run)."""
        return {
            "messages": self.messages,
            "repeat": self.repeat,
            "transfers": self.transfers if self.ledger else 0,
            "ledger_url": (self.ledger_url or "") if self.ledger else "",
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "intents": self.intents if self.saga else 0,
            "rates": ",".join(f"{rate:g}" for rate in self.rates) if self.saga else "",
            "orchestrators": self.orchestrators,
            "psp_intents": self.psp_intents if self.psp else 0,
            "psp_latency_ms": self.psp_latency_ms,
            "charges": self.charges,
            "fx": self.fx,
            "front_door": self.front_door,
            "recon_intents": self.recon_intents if self.recon else 0,
            "webhook_deliveries": self.webhook_deliveries if self.webhooks else 0,
            "fees": self.fees,
            "quick": self.quick,
        }


@dataclass(frozen=True)
class Measured:
    """One benchmark's tables (to print) and its section of the report."""

    section: model.Section
    shown: list[RenderableType] = field(default_factory=list)


Step = Callable[[], Coroutine[Any, Any, Measured]]


def steps(options: Options, redis_url: str, database_url: str) -> list[Step]:
    """The benchmarks `options` asks for, in order: the streams runtime always, then the ledger, the
    gateway, the saga, the PSP run, merchant charges, currency exchange and the front door."""

    async def streams_step() -> Measured:
        results, version = await streams.run(redis_url, options.messages, options.repeat)
        return Measured(
            streams.section(results, options.messages, options.repeat),
            [
                streams.table(results, options.messages, options.repeat, version),
                Text(streams.ratios(results)),
            ],
        )

    async def ledger_step() -> Measured:
        rows = await ledger.run(
            database_url, options.transfers, redis_url, repeat=options.repeat, ledger_url=options.ledger_url
        )
        return Measured(ledger.section(rows, options.repeat), [ledger.table(rows)])

    async def gateway_step() -> Measured:
        result = await gateway.run(
            database_url,
            redis_url,
            concurrency=options.concurrency,
            duration_s=options.seconds,
            repeat=options.repeat,
        )
        return Measured(gateway.section(result), [gateway.table(result)])

    async def saga_step() -> Measured:
        result = await saga.run(
            database_url,
            redis_url,
            intents=options.intents,
            rates=options.rates,
            seconds=options.seconds,
            orchestrators=options.orchestrators,
        )
        return Measured(saga.section(result), [saga.table(result), saga.stages_table(result)])

    async def psp_step() -> Measured:
        result = await psp.run(
            database_url,
            redis_url,
            intents=options.psp_intents,
            latency_ms=options.psp_latency_ms,
            orchestrators=options.orchestrators,
        )
        shown: list[RenderableType] = [psp.table(result), psp.overlap_table(result), psp.stages_table(result)]
        return Measured(psp.section(result), shown)

    wanted = (
        (True, streams_step),
        (options.ledger, ledger_step),
        (options.gateway, gateway_step),
        (options.saga, saga_step),
        (options.psp, psp_step),
        *_merchant_steps(options, redis_url, database_url),
    )
    return [step for chosen, step in wanted if chosen]


def _merchant_steps(options: Options, redis_url: str, database_url: str) -> list[tuple[bool, Step]]:
    """Merchant charges and exchanges, each beside P2P, the front door beside direct requests,
    reconciliation, merchant webhooks and the fee engine, each if asked for."""

    async def charges_step() -> Measured:
        result = await charges.run(
            database_url,
            redis_url,
            concurrency=options.concurrency,
            seconds=options.seconds,
            rounds=options.repeat,
            orchestrators=options.orchestrators,
        )
        return Measured(charges.section(result), [charges.table(result), charges.stages_table(result)])

    async def fx_step() -> Measured:
        result = await fx.run(
            database_url,
            redis_url,
            concurrency=options.concurrency,
            seconds=options.seconds,
            rounds=options.repeat,
            orchestrators=options.orchestrators,
        )
        return Measured(fx.section(result), [fx.table(result), fx.stages_table(result)])

    async def front_door_step() -> Measured:
        result = await front_door.run(
            database_url,
            redis_url,
            concurrency=options.concurrency,
            seconds=options.seconds,
            rounds=options.repeat,
        )
        return Measured(front_door.section(result), [front_door.table(result)])

    async def recon_step() -> Measured:
        result = await recon.run(database_url, redis_url, intents=options.recon_intents)
        return Measured(recon.section(result), [recon.table(result)])

    async def webhooks_step() -> Measured:
        result = await webhooks.run(database_url, redis_url, deliveries=options.webhook_deliveries)
        return Measured(webhooks.section(result), [webhooks.table(result)])

    async def fees_step() -> Measured:
        result = fees.run(rounds=options.repeat)
        return Measured(fees.section(result), [fees.table(result)])

    return [
        (options.charges, charges_step),
        (options.fx, fx_step),
        (options.front_door, front_door_step),
        (options.recon, recon_step),
        (options.webhooks, webhooks_step),
        (options.fees, fees_step),
    ]


def record(
    options: Options,
    started: datetime,
    commit: str,
    machine: model.Machine,
    seconds: float,
    sections: list[model.Section],
    load: tuple[list[float] | None, list[float] | None],
) -> model.BenchRun:
    """The report's record of one run: `load` is the load average at its start and at its end."""
    return model.BenchRun(
        date=started,
        commit=commit,
        machine=machine,
        settings=options.settings(),
        seconds=seconds,
        sections=sections,
        load_start=load[0],
        load_end=load[1],
    )
