"""`pm bench`: the streams runtime beside raw redis-py, measured in the same run."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer
from rich.console import Console

from pm_shared import bench as benchmarks
from pm_shared import ledger_bench
from pm_shared.cli import common

BATCH_MIN = 1_000


def bench(
    redis_url: common.RedisUrlOption = None,
    messages: Annotated[int, typer.Option(min=1_000, help="Messages per run.")] = 40_000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure; the best is reported.")] = 3,
    ledger: Annotated[bool, typer.Option(help="Also measure the embedded ledger engine.")] = True,
    transfers: Annotated[int, typer.Option(min=BATCH_MIN, help="Transfers per ledger run.")] = 100_000,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="PM_DATABASE_URL", help="PostgreSQL server to use.")
    ] = None,
) -> None:
    """Consumer and publisher throughput against raw redis-py (goal: ≥ 70 % of raw).

    The benchmark works on streams of its own (`bench:*`) and a throw-away database, and deletes
    them afterwards.
    """
    config = common.settings()
    url = common.redis_url(redis_url, config)
    argv = ["--redis-url", url, "--messages", str(messages), "--repeat", str(repeat)]
    code = common.run(benchmarks.main(argv), url)
    if ledger:
        results = asyncio.run(ledger_bench.run(database_url or config.database_url, transfers))
        ledger_bench.report(results, Console())
    raise typer.Exit(code)
