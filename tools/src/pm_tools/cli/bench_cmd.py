"""`pm bench`: the streams runtime beside raw redis-py; the ledger, bare and through the ledger-writer;
the gateway's signed intake beside a bare endpoint doing the same XADD; the saga end to end; PromptPay
withdrawals beside P2P against the IPPS sandbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pm_tools.bench import gateway as gateway_bench
from pm_tools.bench import ledger as ledger_bench
from pm_tools.bench import model as bench_model
from pm_tools.bench import psp as psp_bench
from pm_tools.bench import report as bench_report
from pm_tools.bench import saga as saga_bench
from pm_tools.bench import streams as benchmarks
from pm_tools.cli import common

BATCH_MIN = 1_000
RATES_DEFAULT = ",".join(f"{offered:g}" for offered in saga_bench.RATES)
QUICK = {
    "messages": 10_000,
    "repeat": 1,
    "transfers": 20_000,
    "seconds": 2.0,
    "intents": 5_000,
    "rates": "100,300",
    "psp_intents": 500,
}
"""`--quick`: what each option not given on the command line becomes (about a minute and a half in all)."""


def parse_rates(text: str) -> list[float]:
    """`100,200,300` → [100.0, 200.0, 300.0]; each positive."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of numbers: {text!r}") from None
    if not rates or any(rate < 1 for rate in rates):
        raise typer.BadParameter(f"give one or more rates of at least 1/s: {text!r}")
    return rates


def bench(
    ctx: typer.Context,
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
    gateway: Annotated[
        bool,
        typer.Option(help="Also measure signed POST /v1/intents through the gateway beside a bare endpoint."),
    ] = True,
    concurrency: Annotated[
        int,
        typer.Option(min=1, max=1_000, help="Concurrent requests offered to the gateway and bare endpoint."),
    ] = 32,
    seconds: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="Timed seconds per gateway/bare run (after a 1 s warm-up), and of the saga's HTTP run.",
        ),
    ] = 5.0,
    saga: Annotated[
        bool,
        typer.Option(
            help="Also measure the saga end to end: settled P2P intents/s and accept → SETTLED latency."
        ),
    ] = True,
    intents: Annotated[
        int,
        typer.Option(min=1, help="Intents of the saga's pipeline run (published straight to pm:intents)."),
    ] = 20_000,
    rates: Annotated[
        str,
        typer.Option(
            help="Intents/s offered open-loop to the gateway in the saga's HTTP runs, comma-separated: "
            "one run per rate, in that order, on the same fleet (the load sweep)."
        ),
    ] = RATES_DEFAULT,
    orchestrators: Annotated[
        int,
        typer.Option(
            min=1,
            max=16,
            help="Orchestrator processes in the saga's and the PSP run's fleets (one per two cores: on a "
            "2-core machine a second one only adds CPU contention).",
        ),
    ] = 1,
    psp: Annotated[
        bool,
        typer.Option(
            help="Also measure PromptPay withdrawals/s beside P2P/s in one run, against the IPPS sandbox "
            "with simulated latency (is the PSP's latency overlapped?)."
        ),
    ] = True,
    psp_intents: Annotated[
        int,
        typer.Option(min=2, help="Intents of the PSP run, half P2P and half PromptPay withdrawals."),
    ] = psp_bench.INTENTS_DEFAULT,
    psp_latency_ms: Annotated[
        int,
        typer.Option(min=0, max=10_000, help="The IPPS sandbox's latency, added to each of its answers."),
    ] = psp_bench.LATENCY_MS,
    database_url: Annotated[
        str | None, typer.Option("--database-url", envvar="PM_DATABASE_URL", help="PostgreSQL server to use.")
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="A short run: every option not given becomes smaller ("
            + ", ".join(f"{name.replace('_', '-')} {value}" for name, value in QUICK.items())
            + ").",
        ),
    ] = False,
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            file_okay=False,
            help="Directory of the report: <YYYY-MM-DD>-<commit>.json, .md and -throughput, -latency "
            "and -stages .png.",
        ),
    ] = bench_report.OUT_DIR,
    report: Annotated[
        bool, typer.Option("--report/--no-report", help="Write the report files (the tables print anyway).")
    ] = True,
) -> None:
    """Consumer and publisher throughput against raw redis-py (goal: ≥ 70 % of raw).

    Then the ledger: the bare embedded engine (goal: ≥ 20,000 transfers/s) and the real
    ledger-writer driving it (goal: ≥ 60 % of bare), for commands of 1, 2 and 10 transfers.

    The benchmark works on streams of its own (`bench:*`), a throw-away database, and Redis
    database 14 of the same server for the ledger-writer (only its `{pm:ledger:*` keys are
    deleted, before and after); it deletes them afterwards.

    Then the gateway: signed `POST /v1/intents` requests/s, p50 and p99 beside an unsigned bare
    Starlette endpoint doing the same XADD (goal: ≥ 50 % of the bare endpoint), both real processes,
    on another throw-away database and Redis database 14 (only its `{pm:intents:*` and
    `{pm:events:*` keys are deleted, before and after).

    Then the saga: the whole fleet (ledger-writer, `--orchestrators` orchestrators, reconciler,
    gateway) on a throw-away database and Redis database 14 (every `{pm:*` key deleted, before and
    after); settled P2P intents/s and accept → SETTLED p50/p95/p99 pipeline-only (`--intents`
    published straight to `pm:intents`; goal: ≥ 1,000 settled/s) and through HTTP, a load sweep
    (each of `--rates` intents/s offered open-loop for `--seconds`, in turn; goal: p99 ≤ 250 ms at
    300/s and below), with the time per stage and the fee engine's time per intent.

    Then PromptPay withdrawals (`--psp`): the same fleet plus adapter-ipps and the IPPS sandbox
    answering each call after `--psp-latency-ms`, on a throw-away database and Redis database 14;
    `--psp-intents` published straight to `pm:intents`, P2P and withdrawals interleaved. Per type:
    settled/s, publish → SETTLED p50/p95/p99 and the time per stage (a withdrawal's PSP stage
    apart); withdrawals/s ÷ P2P/s, against the serialized ceiling (one payout at a time:
    1 / (2 × latency)), and the payouts in flight at the adapter.

    Last, unless `--no-report`, the report in `--out`: <YYYY-MM-DD>-<commit>.json (every figure,
    the settings, the machine), .md (the tables) and -throughput, -latency and -stages .png plots.
    """
    if quick:
        given: dict[str, Any] = {
            "messages": messages,
            "repeat": repeat,
            "transfers": transfers,
            "seconds": seconds,
            "intents": intents,
            "rates": rates,
            "psp_intents": psp_intents,
        }
        for name, value in QUICK.items():
            source = ctx.get_parameter_source(name)
            if source is None or source.name == "DEFAULT":
                given[name] = value
        messages, repeat, transfers = given["messages"], given["repeat"], given["transfers"]
        seconds, intents, rates, psp_intents = (
            given["seconds"],
            given["intents"],
            given["rates"],
            given["psp_intents"],
        )
    offered_rates = parse_rates(rates)
    config = common.settings()
    url = common.redis_url(redis_url, config)
    dsn = database_url or config.database_url
    started, clock = datetime.now(UTC), time.perf_counter()
    commit, load_start = bench_report.commit_label(), bench_report.load_average()
    sections: list[bench_model.Section] = []

    results, version = common.run(benchmarks.run(url, messages, repeat), url)
    benchmarks.print_report(results, messages, repeat, version, Console())
    sections.append(benchmarks.section(results, messages, repeat))
    if ledger:
        rows = common.run(ledger_bench.run(dsn, transfers, url, repeat=repeat), url)
        common.print_table(ledger_bench.table(rows))
        sections.append(ledger_bench.section(rows, repeat))
    if gateway:
        result = common.run(
            gateway_bench.run(
                dsn,
                url,
                concurrency=concurrency,
                duration_s=seconds,
                repeat=repeat,
            ),
            url,
        )
        common.print_table(gateway_bench.table(result))
        sections.append(gateway_bench.section(result))
    if saga:
        saga_result = common.run(
            saga_bench.run(
                dsn,
                url,
                intents=intents,
                rates=offered_rates,
                seconds=seconds,
                orchestrators=orchestrators,
            ),
            url,
        )
        common.print_table(saga_bench.table(saga_result))
        common.print_table(saga_bench.stages_table(saga_result))
        sections.append(saga_bench.section(saga_result))
    if psp:
        psp_result = common.run(
            psp_bench.run(
                dsn,
                url,
                intents=psp_intents,
                latency_ms=psp_latency_ms,
                orchestrators=orchestrators,
            ),
            url,
        )
        common.print_table(psp_bench.table(psp_result))
        common.print_table(psp_bench.overlap_table(psp_result))
        common.print_table(psp_bench.stages_table(psp_result))
        sections.append(psp_bench.section(psp_result))
    if report:
        run = bench_model.BenchRun(
            date=started,
            commit=commit,
            machine=common.run(bench_report.machine(url, dsn), url),
            settings={
                "messages": messages,
                "repeat": repeat,
                "transfers": transfers if ledger else 0,
                "concurrency": concurrency,
                "seconds": seconds,
                "intents": intents if saga else 0,
                "rates": ",".join(f"{rate:g}" for rate in offered_rates) if saga else "",
                "orchestrators": orchestrators,
                "psp_intents": psp_intents if psp else 0,
                "psp_latency_ms": psp_latency_ms,
                "quick": quick,
            },
            seconds=time.perf_counter() - clock,
            sections=sections,
            load_start=load_start,
            load_end=bench_report.load_average(),
        )
        written = bench_report.write(run, out)
        common.out.print("report: " + ", ".join(str(path) for path in written.values()), soft_wrap=True)
    raise typer.Exit(0)
