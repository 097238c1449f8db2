"""`pm bench`: the streams runtime beside raw redis-py, measured in the same run."""

from __future__ import annotations

from typing import Annotated

import typer

from pm_shared import bench as benchmarks
from pm_shared.cli import common


def bench(
    redis_url: common.RedisUrlOption = None,
    messages: Annotated[int, typer.Option(min=1_000, help="Messages per run.")] = 40_000,
    repeat: Annotated[int, typer.Option(min=1, help="Runs per figure; the best is reported.")] = 3,
) -> None:
    """Consumer and publisher throughput against raw redis-py (goal: ≥ 70 % of raw).

    The benchmark works on streams of its own (`bench:*`) and deletes them afterwards.
    """
    url = common.redis_url(redis_url, common.settings())
    argv = ["--redis-url", url, "--messages", str(messages), "--repeat", str(repeat)]
    raise typer.Exit(common.run(benchmarks.main(argv), url))
