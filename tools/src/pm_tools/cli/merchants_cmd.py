"""`pm merchants create|list|show|deactivate|close-accounts|reactivate|rotate-secret` (docs/api.md,
"Merchants").
The work is `pm_tools.merchants`; this module reads options and prints.

Exit codes: 0 ok; 1 no such merchant, its id taken by another onboarding, an active merchant's
accounts asked to close, or intents still in flight after `--wait`; 2 bad input, PM_KEY_ENCRYPTION_KEY
missing or invalid, the database or Redis cannot be reached, or the ledger-writer did not answer.
The merchant's secret is printed by `create` (and by a repeat of it) and by `rotate-secret`; store
it then.
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from redis.exceptions import RedisError
from rich.table import Table

from pm_shared.keys.crypto import Cipher, DecryptionError, KeyConfigError
from pm_shared.merchants import closing, store
from pm_shared.streams import BackPressureError
from pm_shared.streams.errors import StreamMissingError
from pm_tools import merchants
from pm_tools.cli import common

T = TypeVar("T")

app = typer.Typer(
    help="Merchants: onboard (key and ledger accounts), list, show, deactivate, close accounts, "
    "reactivate, rotate.",
    no_args_is_help=True,
)
MerchantArgument = Annotated[str, typer.Argument(metavar="MERCHANT_ID", help="The merchant id.")]


def _run(work: Coroutine[Any, Any, T], url: str) -> T:
    try:
        return common.run_on_database(work, url)
    except store.MerchantNotFoundError as exc:
        common.fail(f"no merchant {exc}", common.EXIT_FAILED)
    except store.MerchantConflictError as exc:
        common.fail(f"{exc.reason}: merchant {exc.existing.merchant_id} exists", common.EXIT_FAILED)
    except (DecryptionError, KeyConfigError) as exc:
        common.fail(str(exc))
    except StreamMissingError as exc:
        common.fail(f"{exc}: start the fleet (`make up`), whose services provision their streams")
    except BackPressureError:
        common.fail("the ledger is busy; run this again shortly", common.EXIT_BACKPRESSURE)
    except RedisError as exc:
        common.fail(f"Redis: {type(exc).__name__}: {exc}")


def _cipher(setting: str) -> Cipher:
    try:
        return Cipher.from_setting(setting)
    except KeyConfigError as exc:
        common.fail(f"PM_KEY_ENCRYPTION_KEY: {exc}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _print(shown: merchants.Shown) -> None:
    m = shown.merchant
    table = Table(title=f"merchant {m.merchant_id}", show_header=False)
    table.add_column("Field")
    table.add_column("Value")
    for field, value in (
        ("name", m.name),
        ("status", m.status),
        ("accounts", m.accounts_state),
        ("key id", m.key_id),
        ("created", _when(m.created_at)),
        ("deactivated", _when(m.deactivated_at)),
    ):
        table.add_row(field, value)
    for currency, account_id, opened in shown.accounts:
        table.add_row(f"account {currency}", f"{account_id:032x}" + ("" if opened else " (not opened yet)"))
    for event in shown.events:
        table.add_row(f"{_when(event.at)}", f"{event.action} by {event.actor}")
    common.out.print(table)


@app.command("create")
def create_command(
    merchant_id: MerchantArgument,
    name: Annotated[str, typer.Option("--name", help="The merchant's display name.")],
    currency: Annotated[
        list[str], typer.Option("--currency", metavar="CCY", help="A currency it takes (repeatable).")
    ],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Default: cli:<merchant id>.")
    ] = None,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to wait for the accounts.")] = 10.0,
) -> None:
    """Onboard a merchant: its service key and one ledger account per currency (idempotent)."""
    config = common.settings()
    try:
        wanted = merchants.request(merchant_id, name, [c.strip().upper() for c in currency])
    except ValueError as exc:
        common.fail(str(exc))
    cipher = _cipher(config.key_encryption_key)
    key = idempotency_key or f"cli:{merchant_id}"
    shown = _run(merchants.create(config, cipher, wanted, key, wait_s=wait), config.database_url)
    _print(shown)
    common.out.print(f"secret: {shown.secret}", markup=False, soft_wrap=True)
    if not all(opened for _, _, opened in shown.accounts):
        common.err.print("Some accounts are not opened yet (is the ledger-writer running?): run this again.")


@app.command("list")
def list_command() -> None:
    """Every merchant, oldest first."""
    config = common.settings()
    found = _run(merchants.list_all(config.database_url), config.database_url)
    table = Table(title=f"{len(found)} merchant(s)")
    for column in ("merchant", "name", "status", "currencies", "key id", "created"):
        table.add_column(column)
    for m in found:
        table.add_row(m.merchant_id, m.name, m.status, ", ".join(m.currencies), m.key_id, _when(m.created_at))
    common.out.print(table)


@app.command("show")
def show_command(merchant_id: MerchantArgument) -> None:
    """One merchant: its key, its accounts and its audit trail."""
    config = common.settings()
    _print(_run(merchants.show(config, merchant_id), config.database_url))


WaitOption = Annotated[
    float,
    typer.Option(
        "--wait", min=0, max=3_600, help="Seconds to wait for intents in flight and the ledger-writer."
    ),
]


@app.command("deactivate")
def deactivate_command(
    merchant_id: MerchantArgument,
    close_accounts: Annotated[
        bool, typer.Option("--close-accounts", help="Then close its ledger accounts (see close-accounts).")
    ] = False,
    wait: WaitOption = 30.0,
) -> None:
    """Refuse the merchant's key from now on (intents in flight finish)."""
    config = common.settings()
    merchant = _run(
        merchants.set_status(config.database_url, merchant_id, store.INACTIVE), config.database_url
    )
    common.out.print(f"{merchant.merchant_id}: {merchant.status}")
    if close_accounts:
        close_accounts_command(merchant_id, wait)


@app.command("close-accounts")
def close_accounts_command(merchant_id: MerchantArgument, wait: WaitOption = 30.0) -> None:
    """Close a deactivated merchant's ledger accounts once no intent moves its money: balances move to
    the suspense account, every transfer is refused; `reactivate` reopens them with their balances."""
    config = common.settings()
    try:
        merchant, closed = _run(
            merchants.close_accounts(config, merchant_id, wait_s=wait), config.database_url
        )
    except closing.MerchantActiveError:
        common.fail(f"{merchant_id} is active: deactivate it first", common.EXIT_FAILED)
    except closing.MerchantBusyError as exc:
        common.fail(
            f"{merchant_id}: {exc.in_flight} intents still move its money after {wait:g} s; run this again "
            "once they finish",
            common.EXIT_FAILED,
        )
    except closing.ReopeningError:
        common.fail(f"{merchant_id}: its accounts are being reopened; run `pm merchants reactivate` first")
    except closing.SuspenseMissingError:
        common.fail("the ledger has no suspense account yet: start the ledger-writer (it opens it)")
    if not closed:
        common.fail(
            f"{merchant_id}: accounts {merchant.accounts_state}; is the ledger-writer running? run this again"
        )
    common.out.print(f"{merchant.merchant_id}: {merchant.status}, accounts {merchant.accounts_state}")


@app.command("reactivate")
def reactivate_command(merchant_id: MerchantArgument, wait: WaitOption = 30.0) -> None:
    """Reopen the merchant's closed accounts (balances back), then accept its key again."""
    config = common.settings()
    merchant, done = _run(merchants.reactivate(config, merchant_id, wait_s=wait), config.database_url)
    if not done:
        common.fail(
            f"{merchant_id}: accounts {merchant.accounts_state}; is the ledger-writer running? run this again"
        )
    common.out.print(f"{merchant.merchant_id}: {merchant.status}, accounts {merchant.accounts_state}")


@app.command("rotate-secret")
def rotate_command(
    merchant_id: MerchantArgument,
    grace: Annotated[
        float, typer.Option("--grace", min=0, max=30 * 86_400, help="Seconds the old secret still signs.")
    ] = 86_400,
) -> None:
    """A new secret for the merchant's key; the old one signs for --grace more seconds."""
    config = common.settings()
    cipher = _cipher(config.key_encryption_key)
    key, secret = _run(merchants.rotate(config.database_url, cipher, merchant_id, grace), config.database_url)
    common.out.print(f"secret: {secret}", markup=False, soft_wrap=True)
    common.err.print(f"Store the new secret of {key.key_id} now: it is not shown again.", markup=False)
