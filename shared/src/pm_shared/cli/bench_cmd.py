"""`pm bench`: the streams runtime beside raw redis-py; the ledger, bare and through the ledger-writer."""

from __future__ import annotations

from typing import Annotated

import typer

from pm_shared import bench as benchmarks
from pm_shared import ledger_bench
from pm_shared.cli import common

BATCH_MIN = 1_000


def bench(
    redis_url: common.RedisUrlOption = None,
    messages: Annotated[int, typer.Option(min=1_000, help="Messages per run.")] = 40_000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure; the best is reported.")] = 3,
    ledger: Annotated[
        bool,
        typer.Option(help="Also measure the embedded ledger engine, bare and through the ledger-writer."),
    ] = True,
    transfers: Annotated[
        int, typer.Option(min=BATCH_MIN, help="Transfers per command size, bare and through the writer.")
    ] = 100_000,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="PM_DATABASE_URL", help="PostgreSQL server to use.")
    ] = None,
) -> None:
    """Consumer and publisher throughput against raw redis-py (goal: ≥ 70 % of raw).

    Then the ledger: the bare embedded engine (goal: ≥ 20,000 transfers/s) and the real
    ledger-writer driving it (goal: ≥ 60 % of bare), for commands of 1, 2 and 10 transfers.

    The benchmark works on streams of its own (`bench:*`), a throw-away database, and Redis
    database 14 of the same server for the ledger-writer (only its `{pm:ledger:*` keys are
    deleted, before and after); it deletes them afterwards.
    """
    config = common.settings()
    url = common.redis_url(redis_url, config)
    argv = ["--redis-url", url, "--messages", str(messages), "--repeat", str(repeat)]
    code = common.run(benchmarks.main(argv), url)
    if ledger:
        rows = common.run(
            ledger_bench.run(database_url or config.database_url, transfers, url, repeat=repeat), url
        )
        common.print_table(ledger_bench.table(rows))
    raise typer.Exit(code)
