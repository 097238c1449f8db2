"""`pm demo`: drive a realistic mix of traffic through a running gateway and summarise what happened.

Exit codes: 0 every intent reached a terminal state and ended as its scenario says, and the money adds
up (wallets in both currencies, and on the ledger: per ledger debits = credits, no wallet, merchant or
liquidity account below zero, the merchant's and the liquidity accounts as its intents say); 1
something did not (each is listed), or the run could not finish; 2 bad options, no usable key, or the
gateway, the ledger or the users' door does not answer (a QP sandbox that does not answer only leaves
the SBP top-ups out). The work itself is `pm_tools.demo`; this module reads options and prints.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import httpx
import msgspec
import typer
from rich.table import Table

from pm_client import fx_api
from pm_tools import demo, devenv, ledger_ops
from pm_tools.cli import common
from pm_tools.cli.ledger_cmd import format_amount
from pm_tools.devenv.demo_key import DemoKey
from pm_tools.devenv.envfile import with_env_file

DEFAULT_GATEWAY_PORT = 8080
DEFAULT_FRONT_DOOR_PORT = 8000
DEFAULT_AUTH_CENTER_PORT = 9203
SHOWN_WALLETS = 6
SHOWN_PROBLEMS = 20
DEFAULT_WITHDRAWALS = 10
DEFAULT_EXCHANGES = 8
DEFAULT_TOPUPS = 3
PROXY_SECRET_VARIABLE = "PM_GATEWAY_PROXY_SECRET"


def default_gateway(environ: dict[str, str] | None = None) -> str:
    """`PM_GATEWAY_URL`, else the gateway `pm up` starts: this host, `PM_GATEWAY_PORT` or 8080."""
    env = dict(os.environ) if environ is None else environ
    if env.get("PM_GATEWAY_URL"):
        return env["PM_GATEWAY_URL"]
    return f"http://127.0.0.1:{env.get('PM_GATEWAY_PORT') or DEFAULT_GATEWAY_PORT}"


def _local(environ: Mapping[str, str], variable: str, port: int) -> str:
    """This host at the port `variable` names (as `pm up` reads it), else `port`."""
    return f"http://127.0.0.1:{environ.get(variable) or port}"


def _answers(url: str) -> bool:
    try:
        return httpx.get(url.rstrip("/") + "/healthz", timeout=2.0).status_code == 200
    except httpx.HTTPError:
        return False


def resolve_door(
    gateway: str, proxy_secret: str | None, front_door: str | None, auth_center: str | None
) -> tuple[demo.Door | None, str | None]:
    """How the users answer payment requests, and a note when the charges must be left out.

    The proxy secret (`--proxy-secret`, `PM_GATEWAY_PROXY_SECRET`) goes straight to the gateway; else
    the front door and the Auth Center (`--front-door`, `--auth-center`; by default those `pm up`
    starts, when nginx is installed). `pm up` makes a proxy secret of its own run that nothing else
    knows: without its front door, and unless the fleet was started with a secret given, nothing
    can answer for a user, and the charges are left out (said in the summary's notes).
    """
    env = with_env_file()
    secret = proxy_secret or env.get(PROXY_SECRET_VARIABLE)
    if secret:
        return demo.Door(gateway, proxy_secret=secret), None
    door = demo.Door(
        (front_door or _local(env, "PM_FRONT_DOOR_PORT", DEFAULT_FRONT_DOOR_PORT)).rstrip("/"),
        auth_url=(auth_center or _local(env, "PM_AUTH_SANDBOX_PORT", DEFAULT_AUTH_CENTER_PORT)).rstrip("/"),
    )
    if front_door is None and not (_answers(door.url) and door.auth_url and _answers(door.auth_url)):
        return None, (
            f"charges left out: nothing answers for users (no front door at {door.url} with an Auth Center "
            f"at {door.auth_url}; `make up` starts both when nginx is installed), and no --proxy-secret"
        )
    return door, None


def resolve_ledger(database_url: str | None, ledger_url: str | None) -> str:
    """The ledger to check: --ledger-url, else the embedded one in --database-url, else the settings'."""
    config = common.settings() if not database_url or not ledger_url else None
    try:
        return ledger_ops.targets(database_url, ledger_url, config).ledger_url
    except ValueError as exc:
        common.fail(str(exc))


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


def _intent_tables(summary: demo.DemoSummary) -> list[Table]:
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
    return [intents, scenarios]


def _figures(summary: demo.DemoSummary) -> Table:
    money = summary.currency
    figures = Table(title="Money and timing", show_header=False)
    figures.add_column("figure")
    figures.add_column("value", justify="right")
    fees = summary.fees_collected()
    for rule_id, amount in sorted(fees.items()):
        figures.add_row(f"fees collected ({rule_id})", format_amount(amount, money))
    figures.add_row("fees collected (total)", format_amount(sum(fees.values()), money))
    figures.add_row("moved by payments (settled P2P)", format_amount(summary.moved("P2P"), money))
    figures.add_row("users funded (settled ADJUSTMENT)", format_amount(summary.moved_in("funding"), money))
    withdrawn = summary.moved("PROMPTPAY_WITHDRAWAL")
    if withdrawn or any(o.planned.type == "PROMPTPAY_WITHDRAWAL" for o in summary.outcomes):
        figures.add_row("paid out by PromptPay (settled withdrawals)", format_amount(withdrawn, money))
    figures.add_row("payments sent", str(len(summary.payments())))
    figures.add_row("payment phase", f"{summary.payments_s:.2f} s")
    figures.add_row("throughput", f"{summary.throughput():.1f} payments/s")
    for label, quantile in (("p50", 0.5), ("p95", 0.95)):
        value = summary.latency_ms(quantile)
        figures.add_row(f"latency {label} (accepted → terminal)", "-" if value is None else f"{value:.0f} ms")
    return figures


def _wallets(summary: demo.DemoSummary) -> Table:
    wallets = Table(title="Some wallets (ledger balance beside what the settled intents add up to)")
    for column in ("owner", "name", "funded", "available", "posted", "expected", ""):
        wallets.add_column(
            column, justify="right" if column in ("available", "posted", "expected") else "left"
        )
    home = [w for w in summary.wallets if w.currency == summary.currency]
    foreign = [w for w in summary.wallets if w.currency != summary.currency and w.ok][:2]
    shown = [w for w in summary.wallets if not w.ok]
    shown += [w for w in home if w.ok and w.funded][: max(0, SHOWN_WALLETS - 2 - len(shown))]
    shown += [w for w in home if w.ok and not w.funded][:2] + foreign
    for w in shown:
        money = w.currency
        wallets.add_row(
            w.owner_id,
            w.name,
            "yes" if w.funded else "no",
            "-" if w.available is None else format_amount(w.available, money),
            "-" if w.posted is None else format_amount(w.posted, money),
            format_amount(w.expected, money),
            "ok" if w.ok else "MISMATCH",
        )
    return wallets


def _exchanges(summary: demo.DemoSummary, rate: fx_api.Rate) -> Table:
    table = Table(
        title=f"Exchanges at {rate.pair} {rate.rate}, spread {rate.spread_bps} bp (rate {rate.id})",
        show_header=False,
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    for f in summary.exchanges():
        way = f"{f.sell} → {f.buy}"
        table.add_row(f"{way}: settled", str(f.settled))
        table.add_row(f"{way}: sold (principal + spread)", format_amount(f.sold, f.sell))
        table.add_row(f"{way}: spread to fee revenue", format_amount(f.spread, f.sell))
        table.add_row(f"{way}: bought out of liquidity", format_amount(f.bought, f.buy))
    _liquidity(table, summary, ("THB", "USD"))
    return table


def _liquidity(table: Table, summary: demo.DemoSummary, currencies: tuple[str, ...]) -> None:
    """Rows for the liquidity accounts of `currencies` the ledger check read, before and after."""
    checks = summary.ledger.liquidity if summary.ledger is not None else []
    checks = [c for c in checks if c.currency in currencies]
    if not checks:
        table.add_row("liquidity accounts", "not read (no ledger check)")
    for c in checks:
        expected = format_amount((c.before or 0) + c.moved, c.currency)
        table.add_row(f"{c.currency} liquidity before the run", format_amount(c.before or 0, c.currency))
        table.add_row(
            f"{c.currency} liquidity after the run",
            "-" if c.after is None else format_amount(c.after, c.currency),
        )
        table.add_row(
            f"{c.currency} liquidity as the settled intents leave it",
            f"{expected} {'ok' if c.ok else 'MISMATCH'}",
        )


def _topups(summary: demo.DemoSummary, rate: fx_api.Rate) -> Table:
    table = Table(
        title=f"SBP top-ups at {rate.pair} {rate.rate}, spread {rate.spread_bps} bp (rate {rate.id})",
        show_header=False,
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    f = summary.topups()
    table.add_row("settled", str(f.settled))
    table.add_row("paid by SBP (principal + spread)", format_amount(f.collected, "RUB"))
    table.add_row("spread to fee revenue", format_amount(f.spread, "RUB"))
    table.add_row("credited to THB wallets, out of liquidity", format_amount(f.bought, "THB"))
    _liquidity(table, summary, ("RUB", "THB"))
    return table


def _merchant(summary: demo.DemoSummary, shop: demo.ShopSummary) -> Table:
    money = summary.currency
    table = Table(
        title=f"The demo merchant {shop.merchant_id} (mini-app {shop.miniapp_id})", show_header=False
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("this run", shop.onboarding)
    table.add_row(
        "funded by the operator (settled ADJUSTMENT)",
        format_amount(summary.moved_in("merchant-funding"), money),
    )
    table.add_row(
        "credited to users (settled MINIAPP_CREDIT)", format_amount(summary.moved("MINIAPP_CREDIT"), money)
    )
    table.add_row(
        "charged to users (settled MINIAPP_CHARGE)", format_amount(summary.moved("MINIAPP_CHARGE"), money)
    )
    commission = summary.fees_collected().get(demo.COMMISSION_RULE, 0)
    table.add_row(f"commission paid ({demo.COMMISSION_RULE})", format_amount(commission, money))
    m = summary.ledger.merchant if summary.ledger is not None else None
    if m is None:
        table.add_row("its account", "not read (no ledger check)")
    else:
        table.add_row("its account before the run", format_amount(m.before or 0, money))
        table.add_row("its account after the run", "-" if m.after is None else format_amount(m.after, money))
        expected = format_amount((m.before or 0) + m.moved, money)
        table.add_row("what its settled intents leave on it", f"{expected} {'ok' if m.ok else 'MISMATCH'}")
    return table


def _ledger(check: demo.LedgerCheck) -> Table:
    table = Table(title=f"The ledger ({check.where}): sum of every account per ledger")
    for column in (
        "ledger",
        "accounts",
        "debits posted",
        "credits posted",
        "debits pending",
        "credits pending",
        "",
    ):
        table.add_column(column, justify="left" if column in ("ledger", "") else "right")
    for t in check.totals:
        table.add_row(
            f"{t.currency} ({t.ledger})",
            str(t.accounts),
            format_amount(t.debits_posted, t.currency),
            format_amount(t.credits_posted, t.currency),
            format_amount(t.debits_pending, t.currency),
            format_amount(t.credits_pending, t.currency),
            "sum zero" if t.balanced else "UNBALANCED",
        )
    held = ", ".join(f"{n} {what}s" for what, n in check.checked.items())
    below = f"{len(check.below_zero)} below zero" if check.below_zero else "none below zero"
    table.caption = f"held to zero or more: {held}; {below}"
    return table


def _tables(summary: demo.DemoSummary) -> list[Table]:
    tables = [*_intent_tables(summary), _figures(summary), _wallets(summary)]
    if summary.shop is not None:
        tables.append(_merchant(summary, summary.shop))
    if summary.rate is not None:
        tables.append(_exchanges(summary, summary.rate))
    if summary.topup_rate is not None:
        tables.append(_topups(summary, summary.topup_rate))
    if summary.ledger is not None:
        tables.append(_ledger(summary.ledger))
    return tables


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
Credits = Annotated[
    int, typer.Option("--credits", min=0, help="MINIAPP_CREDITs from the demo merchant to funded users.")
]
Charges = Annotated[
    int,
    typer.Option(
        "--charges",
        min=0,
        help="Payment requests of the demo merchant that users answer at /v1/me (from 4 on: one from an "
        "empty wallet, one declined, one over the mini-app's cap). Need --proxy-secret or a front door.",
    ),
]
Exchanges = Annotated[
    int | None,
    typer.Option(
        "--exchanges",
        min=0,
        show_default=False,
        help="FX_EXCHANGEs THB <-> USD at a rate the demo sets (THB only; default 8 in THB, else 0); "
        "from 2 on also a quote used twice and, with the ledger check, one beyond the USD liquidity.",
    ),
]
Topups = Annotated[
    int | None,
    typer.Option(
        "--topups",
        min=0,
        show_default=False,
        help="SBP_TOPUPs into THB wallets at a THB/RUB rate the demo sets, their QRs paid in the QP "
        "sandbox (THB only; default 3 in THB, else 0; left out, with a note, when no QP sandbox answers).",
    ),
]
QpSandboxUrl = Annotated[
    str | None,
    typer.Option(
        "--qp-sandbox",
        metavar="URL",
        show_default=False,
        help="The QP sandbox the top-ups' QRs are paid in; default "
        "http://127.0.0.1:PM_QP_SANDBOX_PORT (9202).",
    ),
]
QpSecret = Annotated[
    str | None,
    typer.Option(
        "--qp-secret",
        show_default=False,
        help="The QP sandbox's bearer token; default PM_QP_SANDBOX_SECRET (or adapter-qp's, or the "
        "gateway's QP callback secret), else the sandbox's default, as `pm up` runs it.",
    ),
]
ProxySecret = Annotated[
    str | None,
    typer.Option(
        "--proxy-secret",
        envvar=PROXY_SECRET_VARIABLE,
        show_envvar=True,
        show_default=False,
        help="The gateway's front-door secret: answer for users at the gateway's /v1/me directly.",
    ),
]
FrontDoor = Annotated[
    str | None,
    typer.Option(
        "--front-door",
        metavar="URL",
        show_default=False,
        help="The front door (nginx) users go through, without --proxy-secret; default "
        "http://127.0.0.1:PM_FRONT_DOOR_PORT (8000), used when it answers.",
    ),
]
AuthCenter = Annotated[
    str | None,
    typer.Option(
        "--auth-center",
        metavar="URL",
        show_default=False,
        help="The Auth Center that gives users their tokens for the front door; default "
        "http://127.0.0.1:PM_AUTH_SANDBOX_PORT (9203).",
    ),
]
DatabaseUrl = Annotated[str | None, common.database_url_option("the embedded ledger the money check reads")]
LedgerUrl = Annotated[
    str | None,
    typer.Option(
        "--ledger-url",
        metavar="URL",
        envvar="PM_LEDGER_URL",
        show_envvar=True,
        show_default=False,
        help="The ledger the money check reads (tigerbeetle://… or embedded+postgresql://…); default the "
        "embedded one in the database.",
    ),
]
NoLedgerCheck = Annotated[
    bool,
    typer.Option(
        "--no-ledger-check",
        help="Skip the ledger check (per ledger debits = credits, no wallet, merchant or liquidity account "
        "below zero, the merchant's and the liquidity accounts): for a gateway whose ledger this machine "
        "cannot read.",
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
    credits: Credits = 8,  # noqa: A002 - the option's name
    charges: Charges = 12,
    exchanges: Exchanges = None,
    topups: Topups = None,
    qp_sandbox: QpSandboxUrl = None,
    qp_secret: QpSecret = None,
    proxy_secret: ProxySecret = None,
    front_door: FrontDoor = None,
    auth_center: AuthCenter = None,
    database_url: DatabaseUrl = None,
    ledger_url: LedgerUrl = None,
    no_ledger_check: NoLedgerCheck = False,
    json_output: JsonOutput = False,
) -> None:
    """Open wallets, fund them, install demo fee rules and send P2P payments (some bound to fail),
    PromptPay withdrawals (one in eight to a number PromptPay does not know), the demo merchant's
    business (its credits to users, and charges the users confirm or decline at /v1/me), exchanges
    THB <-> USD at a rate the demo sets, out of liquidity it funds (a quote used twice is refused; one
    exchange beyond the USD liquidity fails), and SBP top-ups into THB wallets priced in roubles at a
    THB/RUB rate it sets, their QRs paid in the QP sandbox.

    Every intent goes through the gateway over signed HTTP and is followed to its terminal state;
    then the summary: intents by outcome, fees, money moved, throughput, latency, some balances, the
    merchant's account, the exchanges and the liquidity accounts, and the ledger's own sums (per
    ledger zero; no wallet, merchant or liquidity account below zero). Wallets are new each run
    (demo-<run>-<n>); the merchant pm-demo-shop and its mini-app pm-demo-app are onboarded once and
    found again; the fee rules demo-p2p-pre, demo-p2p-post and demo-miniapp-commission get a new
    version each run and price only the demo's own traffic; each run sets new USD/THB and THB/RUB rates.
    """
    key = _key(key_file, key_id, secret)
    url = (gateway or default_gateway()).rstrip("/")
    money = currency.upper()
    door, note = resolve_door(url, proxy_secret, front_door, auth_center) if charges else (None, None)
    ledger = None if no_ledger_check else resolve_ledger(database_url, ledger_url)
    options = demo.DemoOptions(
        users=users,
        payments=payments,
        currency=money,
        concurrency=concurrency,
        seed=seed,
        withdrawals=_in_thb(withdrawals, DEFAULT_WITHDRAWALS, money),
        credits=credits,
        charges=charges if door is not None else 0,
        exchanges=_in_thb(exchanges, DEFAULT_EXCHANGES, money),
        topups=_in_thb(topups, DEFAULT_TOPUPS, money),
    )
    qp = demo.QpSandbox.resolve(qp_sandbox, qp_secret, with_env_file())
    try:
        summary = asyncio.run(
            demo.run_demo(url, key.key_id, key.secret, options, door=door, ledger_url=ledger, qp=qp)
        )
    except demo.DemoError as exc:
        common.fail(str(exc), exc.exit_code)
    if note is not None:
        summary.notes.insert(0, note)
    if no_ledger_check:
        summary.notes.append(
            "ledger check skipped (--no-ledger-check): the merchant's and liquidity accounts were not read"
        )
    _report(summary, json_output)


def _in_thb(given: int | None, default: int, currency: str) -> int:
    """`given`, else `default` in a THB run (withdrawals, exchanges and top-ups are THB's), else 0."""
    if given is not None:
        return given
    return default if currency == "THB" else 0


def _report(summary: demo.DemoSummary, json_output: bool) -> None:
    """The summary (tables, or JSON), then its problems; exit 1 when there are any."""
    if json_output:
        typer.echo(msgspec.json.format(msgspec.json.encode(summary.to_json()), indent=2).decode())
    else:
        for table in _tables(summary):
            common.print_table(table)
    for line in summary.notes:
        common.warn(f"note: {line}")
    if summary.problems:
        for problem in summary.problems[:SHOWN_PROBLEMS]:
            common.warn(f"  {problem}")
        if len(summary.problems) > SHOWN_PROBLEMS:
            common.warn(f"  … and {len(summary.problems) - SHOWN_PROBLEMS} more")
        common.fail(
            f"{len(summary.problems)} intent(s) or balance(s) did not end as expected (listed above)",
            common.EXIT_FAILED,
        )
    if not json_output:
        checked = (
            "; per ledger debits = credits, no wallet, merchant or liquidity account below zero"
            if summary.ledger is not None
            else ""
        )
        common.out.print(
            f"ok: all {len(summary.outcomes)} intents terminal and as expected; balances match{checked}",
            markup=False,
        )
