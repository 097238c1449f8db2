"""`pm chaos`: the fleet under load while processes die and servers restart; then every invariant.

Exit codes: 0 every invariant holds; 1 an invariant failed (the offending ids are printed on
stderr), or the run broke off; 2 the run could not start (no redis-server or PostgreSQL programs, a
server or a service that would not start). The work is `pm_tools.chaos`; this module reads options
and prints.
"""

from __future__ import annotations

import asyncio
from typing import Annotated

import msgspec
import typer

from pm_tools.chaos import ChaosOptions, ServersUnavailable, run_chaos
from pm_tools.cli import common


def chaos(
    seed: Annotated[int, typer.Option("--seed", help="Seed of the traffic and of the chaos schedule.")] = 1,
    intents: Annotated[
        int, typer.Option("--intents", min=20, help="Intents to send (funding included).")
    ] = 1_000,
    kills: Annotated[int, typer.Option("--kills", min=0, help="Processes to SIGKILL (and restart).")] = 9,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=256, help="Requests in flight.")
    ] = 16,
    rate: Annotated[
        float, typer.Option("--rate", min=1.0, help="New intents offered per second (open loop).")
    ] = 20.0,
    postgres_down: Annotated[
        float,
        typer.Option("--postgres-down", min=0.0, help="Seconds PostgreSQL stays stopped at its restart."),
    ] = 3.0,
    quiesce_timeout: Annotated[
        float, typer.Option("--quiesce-timeout", min=1.0, help="Seconds to wait for every intent to end.")
    ] = 120.0,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the run's directory (servers' data, every process's log).")
    ] = False,
) -> None:
    """Send a seeded mix of every intent type through the gateway while services are SIGKILLed and
    restarted, Redis (AOF) and PostgreSQL restart and the PSP sandboxes inject faults; wait until
    everything is quiet and check every invariant (docs/invariants.md).

    Runs on private servers of its own (redis-server and PostgreSQL on free ports, in a temporary
    directory): the machine's Redis and PostgreSQL are never touched.
    """
    options = ChaosOptions(
        seed=seed,
        intents=intents,
        kills=kills,
        concurrency=concurrency,
        rate=rate,
        postgres_down_s=postgres_down,
        quiesce_timeout_s=quiesce_timeout,
        keep=keep,
        progress=common.warn,
    )
    try:
        report = asyncio.run(run_chaos(options))
    except ServersUnavailable as exc:
        common.fail(str(exc), common.EXIT_USAGE)
    except Exception as exc:  # the run broke off (everything it started is stopped): not a verdict
        common.fail(f"the chaos run broke off: {type(exc).__name__}: {exc}", common.EXIT_FAILED)
    if json_output:
        typer.echo(msgspec.json.format(msgspec.json.encode(report.to_json()), indent=2).decode())
    else:
        for table in report.tables():
            common.print_table(table)
    if keep:
        common.warn(f"kept {report.workdir}")
    if not report.ok:
        for line in report.problems():
            common.warn(f"  {line}")
        common.fail(
            f"{len(report.failed)} invariant(s) failed; offending: {', '.join(report.offending_ids()[:50])}",
            common.EXIT_FAILED,
        )
    if not json_output:
        common.out.print(
            f"ok: seed {seed}, {report.accepted} intents all terminal, every invariant holds", markup=False
        )
