"""`pm demo`: drive a realistic mix of traffic through a running gateway and summarise what happened.

Exit codes: 0 every intent reached a terminal state and ended as its scenario says; 1 some did not
(each is listed), or the run could not finish; 2 bad options, no usable key, or the gateway does not
answer. The work itself is `pm_tools.demo`; this module reads options and prints.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import msgspec
import typer
from rich.table import Table

from pm_tools import demo, devenv
from pm_tools.cli import common
from pm_tools.cli.ledger_cmd import format_amount
from pm_tools.devenv.demo_key import DemoKey

DEFAULT_GATEWAY_PORT = 8080
SHOWN_WALLETS = 6
SHOWN_PROBLEMS = 20
DEFAULT_WITHDRAWALS = 10


def default_gateway(environ: dict[str, str] | None = None) -> str:
    """`PM_GATEWAY_URL`, else the gateway `pm up` starts: this host, `PM_GATEWAY_PORT` or 8080."""
    env = dict(os.environ) if environ is None else environ
    if env.get("PM_GATEWAY_URL"):
        return env["PM_GATEWAY_URL"]
    return f"http://127.0.0.1:{env.get('PM_GATEWAY_PORT') or DEFAULT_GATEWAY_PORT}"


def _key(key_file: Path | None, key_id: str | None, secret: str | None) -> DemoKey:
    """The key to sign with: --key-id with --secret, else the key file (`pm up` writes one)."""
    if (key_id is None) != (secret is None):
        common.fail("--key-id and --secret go together")
    if key_id is not None and secret is not None:
        return DemoKey(key_id=key_id, secret=secret)
    path = key_file or devenv.default_home() / "demo-key.json"
    try:
        return msgspec.json.decode(path.read_bytes(), type=DemoKey)
    except FileNotFoundError:
        common.fail(
            f"no key file {path}: start the fleet with `pm up` (it writes one), or give --key-id/--secret"
        )
    except (OSError, msgspec.DecodeError) as exc:
        common.fail(f"cannot read the key file {path}: {exc}")


def _tables(summary: demo.DemoSummary) -> list[Table]:
    money = summary.currency
    intents = Table(title=f"pm demo {summary.run_id}: intents by type and outcome")
    for column in ("type", "state", "failure code", "count"):
        intents.add_column(column, justify="right" if column == "count" else "left")
    for (type_, state, code), count in sorted(summary.by_state().items()):
        intents.add_row(type_, state, code or "-", str(count))

    scenarios = Table(title="Scenarios: what each intent had to end as")
    for column in ("scenario", "expected", "got", "count", ""):
        scenarios.add_column(column, justify="right" if column == "count" else "left")
    for (scenario, state, code), count in sorted(summary.by_scenario().items()):
        got = f"{state} {code}".strip()
        expected = demo.EXPECTED[scenario]
        mark = "ok" if (state, code or None) == expected else "UNEXPECTED"
        scenarios.add_row(scenario, " ".join(filter(None, expected)), got, str(count), mark)

    figures = Table(title="Money and timing", show_header=False)
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    fees = summary.fees_collected()
    for rule_id, amount in sorted(fees.items()):
        figures.add_row(f"fees collected ({rule_id})", format_amount(amount, money))
    figures.add_row("fees collected (total)", format_amount(sum(fees.values()), money))
    figures.add_row("moved by payments (settled P2P)", format_amount(summary.moved("P2P"), money))
    figures.add_row("funded (settled ADJUSTMENT)", format_amount(summary.moved("ADJUSTMENT"), money))
    withdrawn = summary.moved("PROMPTPAY_WITHDRAWAL")
    if withdrawn or any(o.planned.type == "PROMPTPAY_WITHDRAWAL" for o in summary.outcomes):
        figures.add_row("paid out by PromptPay (settled withdrawals)", format_amount(withdrawn, money))
    figures.add_row("payments sent", str(len(summary.payments())))
    figures.add_row("payment phase", f"{summary.payments_s:.2f} s")
    figures.add_row("throughput", f"{summary.throughput():.1f} payments/s")
    for label, quantile in (("p50", 0.5), ("p95", 0.95)):
        value = summary.latency_ms(quantile)
        figures.add_row(f"latency {label} (accepted → terminal)", "-" if value is None else f"{value:.0f} ms")

    wallets = Table(title="Some wallets (ledger balance beside what the settled intents add up to)")
    for column in ("owner", "name", "funded", "available", "posted", "expected", ""):
        wallets.add_column(
            column, justify="right" if column in ("available", "posted", "expected") else "left"
        )
    shown = [w for w in summary.wallets if not w.ok]
    shown += [w for w in summary.wallets if w.ok and w.funded][: max(0, SHOWN_WALLETS - 2 - len(shown))]
    shown += [w for w in summary.wallets if w.ok and not w.funded][:2]
    for w in shown:
        wallets.add_row(
            w.owner_id,
            w.name,
            "yes" if w.funded else "no",
            "-" if w.available is None else format_amount(w.available, money),
            "-" if w.posted is None else format_amount(w.posted, money),
            format_amount(w.expected, money),
            "ok" if w.ok else "MISMATCH",
        )
    return [intents, scenarios, figures, wallets]


GatewayUrl = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        metavar="URL",
        show_default=False,
        help="The gateway's base URL; default PM_GATEWAY_URL, else http://127.0.0.1:PM_GATEWAY_PORT (8080).",
    ),
]
KeyFile = Annotated[
    Path | None,
    typer.Option(
        "--key-file",
        metavar="PATH",
        show_default=False,
        help="JSON {keyId, secret} of an admin key; default .pm/demo-key.json (written by `pm up`).",
    ),
]
KeyId = Annotated[
    str | None, typer.Option("--key-id", show_default=False, help="An admin key id, instead of --key-file.")
]
Secret = Annotated[str | None, typer.Option("--secret", show_default=False, help="The secret of --key-id.")]
Users = Annotated[int, typer.Option("--users", min=4, help="Wallets to open (two stay unfunded).")]
Payments = Annotated[int, typer.Option("--payments", min=1, help="P2P payments to send.")]
Currency = Annotated[str, typer.Option("--currency", help=f"One of {', '.join(demo.CURRENCIES)}.")]
Concurrency = Annotated[
    int, typer.Option("--concurrency", min=1, max=1_000, help="Payments in flight at once.")
]
Seed = Annotated[
    int | None,
    typer.Option("--seed", show_default=False, help="Seed of amounts, names and pairs (default: random)."),
]
Withdrawals = Annotated[
    int | None,
    typer.Option(
        "--withdrawals",
        min=0,
        show_default=False,
        help="PromptPay withdrawals to send (THB only; default 10 in THB, else 0; need adapter-ipps "
        "and its sandbox, which `pm up` runs).",
    ),
]
JsonOutput = Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")]


def demo_command(
    gateway: GatewayUrl = None,
    key_file: KeyFile = None,
    key_id: KeyId = None,
    secret: Secret = None,
    users: Users = 20,
    payments: Payments = 200,
    currency: Currency = "THB",
    concurrency: Concurrency = 16,
    seed: Seed = None,
    withdrawals: Withdrawals = None,
    json_output: JsonOutput = False,
) -> None:
    """Open wallets, fund them, install demo fee rules and send P2P payments (some bound to fail),
    and PromptPay withdrawals (one in eight to a number PromptPay does not know).

    Every intent goes through the gateway over signed HTTP and is followed to its terminal state;
    then the summary: intents by outcome, fees, money moved, throughput, latency and some balances.
    Wallets are new each run (demo-<run>-<n>); the fee rules demo-p2p-pre and demo-p2p-post get a
    new version each run and only price payments between demo-… wallets.
    """
    key = _key(key_file, key_id, secret)
    url = (gateway or default_gateway()).rstrip("/")
    money = currency.upper()
    options = demo.DemoOptions(
        users=users,
        payments=payments,
        currency=money,
        concurrency=concurrency,
        seed=seed,
        withdrawals=withdrawals
        if withdrawals is not None
        else (DEFAULT_WITHDRAWALS if money == "THB" else 0),
    )
    try:
        summary = asyncio.run(demo.run_demo(url, key.key_id, key.secret, options))
    except demo.DemoError as exc:
        common.fail(str(exc), exc.exit_code)
    _report(summary, json_output)


def _report(summary: demo.DemoSummary, json_output: bool) -> None:
    """The summary (tables, or JSON), then its problems; exit 1 when there are any."""
    if json_output:
        typer.echo(msgspec.json.format(msgspec.json.encode(summary.to_json()), indent=2).decode())
    else:
        for table in _tables(summary):
            common.print_table(table)
    if summary.problems:
        for problem in summary.problems[:SHOWN_PROBLEMS]:
            common.warn(f"  {problem}")
        if len(summary.problems) > SHOWN_PROBLEMS:
            common.warn(f"  … and {len(summary.problems) - SHOWN_PROBLEMS} more")
        common.fail(
            f"{len(summary.problems)} intent(s) or wallet(s) did not end as expected (listed above)",
            common.EXIT_FAILED,
        )
    if not json_output:
        common.out.print(
            f"ok: all {len(summary.outcomes)} intents terminal and as expected; balances match", markup=False
        )
