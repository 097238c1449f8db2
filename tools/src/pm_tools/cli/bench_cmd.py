"""`pm bench`: the streams runtime beside raw redis-py; the ledger, bare and through the ledger-writer;
the gateway's signed intake beside a bare endpoint doing the same XADD; the saga end to end; PromptPay
withdrawals beside P2P against the IPPS sandbox; merchant charges and currency exchanges, each beside
P2P; end users' requests through nginx beside direct ones. The benchmarks themselves are `pm_tools.bench`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from pm_tools.bench import report, suite
from pm_tools.cli import common

BATCH_MIN = 1_000
RATES_DEFAULT = ",".join(f"{offered:g}" for offered in suite.RATES)
QUICK = {
    "messages": 10_000,
    "repeat": 1,
    "transfers": 20_000,
    "seconds": 2.0,
    "intents": 5_000,
    "rates": "100,300",
    "psp_intents": 500,
    "recon_intents": 20_000,
    "webhook_deliveries": 2_000,
}
"""`--quick`: what each option not given on the command line becomes (a few minutes in all)."""

Messages = Annotated[int, typer.Option(min=1_000, help="Messages per run.")]
Repeat = Annotated[
    int,
    typer.Option(
        min=1,
        help="Runs per figure; the best is reported (merchant charges, exchanges and the front door: "
        "rounds of each way, alternating which goes first).",
    ),
]
Ledger = Annotated[
    bool, typer.Option(help="Also measure the embedded ledger engine, bare and through the ledger-writer.")
]
Transfers = Annotated[
    int, typer.Option(min=BATCH_MIN, help="Transfers per command size, bare and through the writer.")
]
LedgerUrl = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        help="A real TigerBeetle cluster (tigerbeetle://<cluster>@<addr>,…): the ledger figures again "
        "against it, beside the embedded engine's (writer goal there: ≥ 80 % of bare).",
    ),
]
Gateway = Annotated[
    bool,
    typer.Option(help="Also measure signed POST /v1/intents through the gateway beside a bare endpoint."),
]
Concurrency = Annotated[
    int,
    typer.Option(
        min=1,
        max=1_000,
        help="Concurrent requests offered to the gateway and bare endpoint; concurrent flows of the "
        "merchant-charge and exchange runs and concurrent requests of the front-door runs.",
    ),
]
Seconds = Annotated[
    float,
    typer.Option(
        min=0.1,
        help="Timed seconds per gateway/bare run (after a 1 s warm-up), of the saga's HTTP run, and of "
        "each merchant-charge, exchange and front-door phase (after a 1 s warm-up).",
    ),
]
Saga = Annotated[
    bool,
    typer.Option(
        help="Also measure the saga end to end: settled P2P intents/s and accept → SETTLED latency."
    ),
]
Intents = Annotated[
    int, typer.Option(min=1, help="Intents of the saga's pipeline run (published straight to pm:intents).")
]
Rates = Annotated[
    str,
    typer.Option(
        help="Intents/s offered open-loop to the gateway in the saga's HTTP runs, comma-separated: "
        "one run per rate, in that order, on the same fleet (the load sweep)."
    ),
]
Orchestrators = Annotated[
    int,
    typer.Option(
        min=1,
        max=16,
        help="Orchestrator processes in the saga's and the PSP run's fleets (one per two cores: on a "
        "2-core machine a second one only adds CPU contention).",
    ),
]
Psp = Annotated[
    bool,
    typer.Option(
        help="Also measure PromptPay withdrawals/s beside P2P/s in one run, against the IPPS sandbox "
        "with simulated latency (is the PSP's latency overlapped?)."
    ),
]
PspIntents = Annotated[
    int, typer.Option(min=2, help="Intents of the PSP run, half P2P and half PromptPay withdrawals.")
]
PspLatency = Annotated[
    int, typer.Option(min=0, max=10_000, help="The IPPS sandbox's latency, added to each of its answers.")
]
Charges = Annotated[
    bool,
    typer.Option(
        help="Also measure merchant charges (confirm of a payment request made beforehand → SETTLED; "
        "and, with no goal, with the request inside the flow) beside P2P (signed POST /v1/intents → "
        "SETTLED), closed loop at --concurrency, in one run of the saga's fleet."
    ),
]
Fx = Annotated[
    bool,
    typer.Option(
        help="Also measure currency exchanges (POST /v1/fx/quotes → FX_EXCHANGE → SETTLED, THB for USD) "
        "beside P2P, closed loop at --concurrency, in one run of the saga's fleet, with the quote's latency."
    ),
]
FrontDoor = Annotated[
    bool,
    typer.Option(
        help="Also measure end users' requests through nginx (auth_request → Auth Center sandbox → "
        "gateway) beside the same requests straight to the gateway, at --concurrency (skipped, not "
        "failed, without nginx)."
    ),
]
Recon = Annotated[
    bool,
    typer.Option(
        help="Also measure reconciliation: the verify sweep over --recon-intents settled intents made in "
        "bulk (intents/s, beside lookup_transfers alone) and the continuous check's lag behind pm:events "
        "at 300 intents/s on the saga's fleet."
    ),
]
ReconIntents = Annotated[int, typer.Option(min=1_000, help="Settled intents the verify sweep checks.")]
Webhooks = Annotated[
    bool,
    typer.Option(
        help="Also measure merchant webhooks: pm-webhooks' deliveries/s to a local receiver (beside aiohttp "
        "posting the same signed bodies) and event → delivered p99 at 300 events/s."
    ),
]
Fees = Annotated[
    bool,
    typer.Option(
        help="Also measure the fee engine: µs to price a P2P intent against every stored rule, beside "
        "cel-python (the evaluator it replaced) on the same rules and intents."
    ),
]
WebhookDeliveries = Annotated[int, typer.Option(min=100, help="Deliveries the webhook throughput run makes.")]
DatabaseUrl = Annotated[
    str | None, typer.Option("--database-url", envvar="PM_DATABASE_URL", help="PostgreSQL server to use.")
]
Quick = Annotated[
    bool,
    typer.Option(
        "--quick",
        help="A short run: every option not given becomes smaller ("
        + ", ".join(f"{name.replace('_', '-')} {value}" for name, value in QUICK.items())
        + ").",
    ),
]
Out = Annotated[
    Path,
    typer.Option(
        "--out",
        file_okay=False,
        help="Directory of the report: <YYYY-MM-DD>-<commit>.json, .md and -throughput, -latency "
        "and -stages .png.",
    ),
]
Report = Annotated[
    bool, typer.Option("--report/--no-report", help="Write the report files (the tables print anyway).")
]


def parse_rates(text: str) -> list[float]:
    """`100,200,300` → [100.0, 200.0, 300.0]; each positive."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"not a comma-separated list of numbers: {text!r}") from None
    if not rates or any(rate < 1 for rate in rates):
        raise typer.BadParameter(f"give one or more rates of at least 1/s: {text!r}")
    return rates


def quickened(ctx: typer.Context, given: dict[str, Any]) -> dict[str, Any]:
    """`given` with `QUICK`'s value for each option the command line did not name."""
    quick = {}
    for name, value in QUICK.items():
        source = ctx.get_parameter_source(name)
        if source is None or source.name == "DEFAULT":
            quick[name] = value
    return {**given, **quick}


def bench(
    ctx: typer.Context,
    redis_url: common.RedisUrlOption = None,
    messages: Messages = 40_000,
    repeat: Repeat = 3,
    ledger: Ledger = True,
    transfers: Transfers = 100_000,
    ledger_url: LedgerUrl = None,
    gateway: Gateway = True,
    concurrency: Concurrency = 32,
    seconds: Seconds = 5.0,
    saga: Saga = True,
    intents: Intents = 20_000,
    rates: Rates = RATES_DEFAULT,
    orchestrators: Orchestrators = 1,
    psp: Psp = True,
    psp_intents: PspIntents = suite.PSP_INTENTS,
    psp_latency_ms: PspLatency = suite.PSP_LATENCY_MS,
    charges: Charges = True,
    fx: Fx = True,
    front_door: FrontDoor = True,
    recon: Recon = True,
    recon_intents: ReconIntents = suite.RECON_INTENTS,
    webhooks: Webhooks = True,
    webhook_deliveries: WebhookDeliveries = suite.WEBHOOK_DELIVERIES,
    fees: Fees = True,
    database_url: DatabaseUrl = None,
    quick: Quick = False,
    out: Out = report.OUT_DIR,
    write_report: Report = True,
) -> None:
    """Consumer and publisher throughput against raw redis-py (goal: ≥ 70 % of raw). On streams of its
    own (`bench:*`), throw-away databases, and Redis database 14 of the same server (only the keys a
    benchmark makes are deleted, before and after).

    Then the ledger: the bare embedded engine (goal: ≥ 20,000 transfers/s) and the real
    ledger-writer driving it (goal: ≥ 75 % of bare), for commands of 1, 2 and 10 transfers; with
    `--ledger-url`, the same against a real TigerBeetle cluster too (goal: ≥ 80 % of bare).

    Then the gateway: signed `POST /v1/intents` requests/s, p50 and p99 beside an unsigned bare
    Starlette endpoint doing the same XADD (goal: ≥ 65 % of the bare endpoint), both real processes.

    Then the saga: the whole fleet (ledger-writer, `--orchestrators` orchestrators, reconciler,
    gateway); settled P2P intents/s and accept → SETTLED p50/p95/p99 pipeline-only (`--intents`
    straight to `pm:intents`; goal: ≥ 1,000 settled/s) and through HTTP, a load sweep (each of
    `--rates` intents/s offered open-loop for `--seconds`; goal: p99 ≤ 250 ms at 300/s), by stage.

    Then PromptPay withdrawals (`--psp`): the same fleet plus adapter-ipps and the IPPS sandbox (each
    call answered after `--psp-latency-ms`), `--psp-intents` P2P and withdrawals interleaved: per type
    settled/s, publish → SETTLED p50/p95/p99 by stage, against the serialized ceiling 1 / (2 × latency).

    Then merchant charges and currency exchange (`--charges`, `--fx`), each on the saga's fleet beside
    signed P2P intents, `--concurrency` flows at a time, each begun when the last settled, `--repeat`
    rounds: a user's confirm of a payment request made beforehand → SETTLED (goal: ≥ 80 % of P2P/s;
    with the merchant's request inside the flow too, no goal); a quote, then the FX_EXCHANGE that uses
    it → SETTLED (goal: ≥ 70 % of P2P/s), with the quote's latency.

    Then the front door (`--front-door`): through nginx and the Auth Center beside direct (goal: ≥ 80 %
    of direct; no nginx: skipped). Reconciliation (`--recon`): the verify sweep over `--recon-intents`
    settled intents (goal: ≥ 20,000/s), the continuous check's p99 lag at 300/s (goal: ≤ 2 s). Merchant
    webhooks (`--webhooks`): deliveries/s to a local receiver beside aiohttp posting the same
    signed bodies, event → delivered p99 at 300 events/s (goal: ≤ 500 ms). The fee engine
    (`--fees`): µs to price a P2P intent against every stored rule, beside cel-python (goal: ≤ 20 µs).

    Last, unless `--no-report`, the report in `--out`: .json, .md and .png plots.
    """
    sized: dict[str, Any] = {"messages": messages, "repeat": repeat, "transfers": transfers}
    sized |= {"seconds": seconds, "intents": intents, "rates": rates, "psp_intents": psp_intents}
    sized |= {"recon_intents": recon_intents, "webhook_deliveries": webhook_deliveries}
    if quick:
        sized = quickened(ctx, sized)
    flags: dict[str, Any] = {"ledger": ledger, "ledger_url": ledger_url, "gateway": gateway, "saga": saga}
    flags |= {"concurrency": concurrency, "orchestrators": orchestrators, "charges": charges, "fees": fees}
    flags |= {"psp": psp, "psp_latency_ms": psp_latency_ms}
    flags |= {"fx": fx, "front_door": front_door, "recon": recon, "webhooks": webhooks, "quick": quick}
    options = suite.Options(**{**sized, "rates": tuple(parse_rates(sized["rates"]))}, **flags)
    config = common.settings()
    url = common.redis_url(redis_url, config)
    measure(options, url, database_url or config.database_url, out if write_report else None)
    raise typer.Exit(0)


def measure(options: suite.Options, url: str, dsn: str, out: Path | None) -> None:
    """Run every benchmark of `options` (each in an event loop of its own), print its tables, and
    write the report into `out` unless it is None."""
    started, clock = datetime.now(UTC), time.perf_counter()
    commit, load_start = report.commit_label(), report.load_average()
    sections = []
    for step in suite.steps(options, url, dsn):
        measured = common.run(step(), url)
        for shown in measured.shown:
            common.print_table(shown)
        sections.append(measured.section)
    if out is None:
        return
    machine = common.run(report.machine(url, dsn), url)
    seconds = time.perf_counter() - clock
    run = suite.record(
        options, started, commit, machine, seconds, sections, (load_start, report.load_average())
    )
    written = report.write(run, out)
    common.out.print("report: " + ", ".join(str(path) for path in written.values()), soft_wrap=True)
