"""`pm keys create|rotate|deactivate|list`: the service keys API clients sign requests with (see
docs/api.md). The work is `pm_tools.keys`; this module reads options and prints.

Exit codes: 0 ok; 1 no such key; 2 bad input, PM_KEY_ENCRYPTION_KEY missing or invalid, or the
database cannot be reached or is not migrated. A secret is printed once, when it is made, and never
again (the database holds it only encrypted).
"""

from __future__ import annotations

from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import msgspec
import typer
from rich.table import Table

from pm_shared import db
from pm_shared.keys import store, views
from pm_shared.keys.crypto import DecryptionError, KeyConfigError
from pm_tools import keys
from pm_tools.cli import common
from pm_tools.devenv.envfile import env_file_path
from pm_tools.keys import OPERATIONS as OPERATIONS

T = TypeVar("T")

app = typer.Typer(help="Service keys: create, rotate, deactivate, list.", no_args_is_help=True)

DatabaseUrlOption = Annotated[str | None, common.database_url_option("pm.service_key")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
KeyIdArgument = Annotated[str, typer.Argument(metavar="KEY_ID", help="The key id (pk_…).")]


def _print_json(value: object) -> None:
    typer.echo(msgspec.json.format(msgspec.json.encode(value), indent=2).decode())


def _database_url(option: str | None) -> str:
    url = option or common.settings().database_url
    try:
        return db.check_dsn(url)
    except db.DatabaseUrlError as exc:
        common.fail(str(exc))


def _setting() -> str:
    """PM_KEY_ENCRYPTION_KEY (here or in the env file); set but invalid exits 2 naming the variable."""
    setting = common.settings().key_encryption_key
    try:
        keys.check_setting(setting)
    except KeyConfigError as exc:
        common.fail(str(exc))
    return setting


def _run(url: str, work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; an unreachable or unmigrated database, or a missing key, exits 2; no such key 1."""
    try:
        return common.run_on_database(work, url)
    except store.KeyNotFoundError as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    except (DecryptionError, KeyConfigError) as exc:
        common.fail(str(exc))


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _operations(p: store.Permissions) -> str:
    return ", ".join(sorted(p.operations))


def _owners(p: store.Permissions) -> str:
    return "any" if p.owners is None else ", ".join(sorted(p.owners)) or "none"


def _key_table(key: store.ServiceKey, title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("Field")
    table.add_column("Value")
    table.add_row("key id", key.key_id)
    table.add_row("status", key.status)
    table.add_row("operations", _operations(key.permissions))
    table.add_row("owners", _owners(key.permissions))
    table.add_row("admin", "yes" if key.permissions.admin else "no")
    table.add_row("description", key.description or "-")
    table.add_row("created", _when(key.created_at))
    table.add_row("rotated", _when(key.rotated_at))
    table.add_row("previous secret valid until", _when(key.previous_valid_until))
    table.add_row("deactivated", _when(key.deactivated_at))
    table.add_row("last used", _when(key.last_used_at))
    return table


def _print_secret(key_id: str, secret: str) -> None:
    common.out.print(f"secret: {secret}", markup=False, soft_wrap=True)
    common.err.print(
        f"Store the secret of {key_id} now: it is not shown again (only its encrypted form is kept).",
        markup=False,
        soft_wrap=True,
    )


@app.command("create")
def create_command(
    admin: Annotated[bool, typer.Option("--admin", help="May use the admin routes and ADJUSTMENT.")] = False,
    operation: Annotated[
        list[str] | None,
        typer.Option(
            "--operation",
            metavar="TYPE",
            show_default=False,
            help="An intent type the key may create (repeatable): P2P, PROMPTPAY_WITHDRAWAL, SBP_TOPUP, "
            "ADJUSTMENT (admin only), or * for all. Default: all (ADJUSTMENT only with --admin).",
        ),
    ] = None,
    owner: Annotated[
        list[str] | None,
        typer.Option(
            "--owner",
            metavar="OWNER_ID",
            show_default=False,
            help="An owner id the key may act for (repeatable). Default: any owner.",
        ),
    ] = None,
    description: Annotated[
        str, typer.Option("--description", metavar="TEXT", help="What the key is for.")
    ] = "",
    json_out: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Create a service key and print its id and secret (the secret is shown only this once)."""
    try:
        permissions = keys.permissions_for(operation, owner, admin=admin)
    except ValueError as exc:
        common.fail(str(exc))
    if len(description) > keys.MAX_DESCRIPTION:
        common.fail(f"--description is limited to {keys.MAX_DESCRIPTION} characters")
    url = _database_url(database_url)
    work = keys.create(url, _setting(), env_file_path(), permissions, description)
    key, secret = _run(url, work)
    if json_out:
        _print_json(views.with_secret(key, secret))
        return
    common.print_table(_key_table(key, f"Created service key {key.key_id}"))
    _print_secret(key.key_id, secret)


@app.command("rotate")
def rotate_command(
    key_id: KeyIdArgument,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="SECONDS",
            min=0,
            help="How long the previous secret stays valid; 0 ends it now.",
        ),
    ] = 86_400,
    json_out: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Give a key a new secret; the previous one stays valid for --grace seconds."""
    url = _database_url(database_url)
    key, secret = _run(url, keys.rotate(url, _setting(), env_file_path(), key_id, grace))
    if json_out:
        _print_json(views.with_secret(key, secret))
        return
    common.print_table(_key_table(key, f"Rotated service key {key.key_id}"))
    if key.previous_valid_until is None:
        common.out.print("the previous secret is no longer valid", markup=False)
    else:
        common.out.print(
            f"the previous secret stays valid until {_when(key.previous_valid_until)}", markup=False
        )
    _print_secret(key.key_id, secret)


@app.command("deactivate")
def deactivate_command(
    key_id: KeyIdArgument,
    json_out: JsonOption = False,
    database_url: DatabaseUrlOption = None,
) -> None:
    """Deactivate a key: requests signed with it are refused from now on."""
    url = _database_url(database_url)
    key = _run(url, keys.deactivate(url, key_id))
    if json_out:
        _print_json(views.info(key))
        return
    common.out.print(f"deactivated {key.key_id} at {_when(key.deactivated_at)}", markup=False)


@app.command("list")
def list_command(json_out: JsonOption = False, database_url: DatabaseUrlOption = None) -> None:
    """List every service key, oldest first (never their secrets)."""
    url = _database_url(database_url)
    found = _run(url, keys.list_all(url))
    if json_out:
        _print_json([views.info(k) for k in found])
        return
    if not found:
        common.out.print("no service keys (create one with `pm keys create`)", markup=False)
        return
    table = Table(title=f"Service keys ({len(found)})")
    for column in (
        "Key id",
        "Status",
        "Operations",
        "Owners",
        "Admin",
        "Description",
        "Created",
        "Last used",
    ):
        table.add_column(column)
    for k in found:
        table.add_row(
            k.key_id,
            k.status,
            _operations(k.permissions),
            _owners(k.permissions),
            "yes" if k.permissions.admin else "no",
            k.description or "-",
            _when(k.created_at),
            _when(k.last_used_at),
        )
    common.print_table(table)
