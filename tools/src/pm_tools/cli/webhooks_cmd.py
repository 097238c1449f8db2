"""`pm webhooks`: merchants' outbound webhooks (docs/webhooks-api.md) — endpoints, secrets, the
delivery log and replays.

    pm webhooks endpoints MERCHANT                 its endpoints
    pm webhooks add MERCHANT URL --event E [...]   a new endpoint; prints its secret (store it then)
    pm webhooks endpoint EP                        one endpoint and its changes
    pm webhooks rotate EP [--grace S]              a new secret; the old one signs S more seconds
    pm webhooks disable EP [--reason R]  |  enable EP
    pm webhooks deliveries [--merchant M] [--endpoint EP] [--status S] [--limit N] [--json]
    pm webhooks show DELIVERY [--json]             a delivery, its body and its attempts
    pm webhooks replay DELIVERY [--yes]            deliver it again (asks first without --yes)

The work is `pm_tools.webhooks`; this module reads options and prints. Exit codes: 0 done; 1 no
such merchant, endpoint or delivery, an Idempotency-Key used for another endpoint, a replay refused
(a disabled endpoint, an attempt under way) or not confirmed; 2 bad input (a URL the policy
refuses, an unknown event type), PM_KEY_ENCRYPTION_KEY missing or invalid, or a database that
cannot be reached.
"""

from __future__ import annotations

import json
import re
from collections.abc import Coroutine
from datetime import datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.table import Table

from pm_client.api import ID_PATTERN
from pm_client.webhook_api import DELIVERY_STATUSES, ENDPOINT_ID_PATTERN
from pm_shared.keys.crypto import Cipher, DecryptionError, KeyConfigError
from pm_shared.webhooks import deliveries, endpoints, urls
from pm_shared.webhooks.events import EVENT_TYPES
from pm_tools import webhooks
from pm_tools.cli import common
from pm_tools.devenv.envfile import with_env_file

T = TypeVar("T")

app = typer.Typer(
    help="Merchants' webhooks: endpoints, secrets, the delivery log and replays.", no_args_is_help=True
)
MerchantArgument = Annotated[str, typer.Argument(metavar="MERCHANT", help="The merchant id.")]
EndpointArgument = Annotated[str, typer.Argument(metavar="EP", help="The endpoint id (ep_…).")]
DeliveryArgument = Annotated[
    int, typer.Argument(metavar="DELIVERY", min=1, help="The delivery id (from `pm webhooks deliveries`).")
]
_IDEMPOTENCY_KEY = re.compile(r"[ -~]{1,255}")


def _run(work: Coroutine[Any, Any, T], url: str) -> T:
    try:
        return common.run_on_database(work, url)
    except (endpoints.MerchantNotFoundError, deliveries.DeliveryNotFoundError) as exc:
        what = "merchant" if isinstance(exc, endpoints.MerchantNotFoundError) else "webhook delivery"
        common.fail(f"no {what} {exc.args[0]}", common.EXIT_FAILED)
    except endpoints.EndpointNotFoundError as exc:
        common.fail(f"no webhook endpoint {exc.args[0]}", common.EXIT_FAILED)
    except endpoints.IdempotencyConflictError as exc:
        common.fail(
            f"idempotency_key_reused: the key made endpoint {exc.args[0]} for another request",
            common.EXIT_FAILED,
        )
    except (deliveries.EndpointDisabledError, deliveries.DeliveryInFlightError) as exc:
        common.fail(str(exc), common.EXIT_FAILED)
    except (DecryptionError, KeyConfigError) as exc:
        common.fail(str(exc))


def _cipher(setting: str) -> Cipher:
    try:
        return Cipher.from_setting(setting)
    except KeyConfigError as exc:
        common.fail(f"PM_KEY_ENCRYPTION_KEY: {exc}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def _checked(value: str | None, pattern: str, what: str) -> str | None:
    if value is not None and not re.search(pattern, value):
        common.fail(f"{what} {value!r} is not one (see `pm webhooks --help`)")
    return value


def _print_secret(secret: str | None, endpoint_id: str) -> None:
    if secret is None:
        common.out.print(
            f"secret: not shown (rotated since; `pm webhooks rotate {endpoint_id}` makes a new one)"
        )
        return
    common.out.print(f"secret: {secret}", markup=False, soft_wrap=True)
    common.err.print(f"Store the secret of {endpoint_id} now: the merchant verifies with it.", markup=False)


@app.command("endpoints")
def list_endpoints(merchant_id: MerchantArgument) -> None:
    """A merchant's endpoints, oldest first (never their secrets)."""
    _checked(merchant_id, ID_PATTERN, "merchant id")
    url = common.settings().database_url
    found = _run(webhooks.of_merchant(url, merchant_id), url)
    table = Table(title=f"{len(found)} webhook endpoint(s) of {merchant_id}")
    for column in ("endpoint", "status", "url", "events", "failing since", "created"):
        table.add_column(column)
    for e in found:
        status = e.status if e.disabled_reason is None else f"{e.status} ({e.disabled_reason})"
        table.add_row(
            e.endpoint_id,
            status,
            e.url,
            ", ".join(e.event_types),
            _when(e.failing_since),
            _when(e.created_at),
        )
    common.print_table(table)


@app.command("add")
def add(
    merchant_id: MerchantArgument,
    endpoint_url: Annotated[str, typer.Argument(metavar="URL", help="Where its events go (https).")],
    event: Annotated[
        list[str], typer.Option("--event", metavar="TYPE", help=f"Repeatable: {', '.join(EVENT_TYPES)}.")
    ],
    idempotency_key: Annotated[
        str | None, typer.Option("--idempotency-key", help="Default: made of the merchant, URL and events.")
    ] = None,
) -> None:
    """A new endpoint for a merchant, with its signing secret (idempotent: the same command again
    answers the same endpoint)."""
    _checked(merchant_id, ID_PATTERN, "merchant id")
    environ = with_env_file()
    try:
        event_types = endpoints.event_types(event)
        checked = urls.check(endpoint_url, webhooks.url_policy(environ))
    except urls.UrlRefusedError as exc:
        common.fail(f"{exc.code}: {exc}")
    except ValueError as exc:
        common.fail(str(exc))
    key = idempotency_key or webhooks.default_idempotency_key(merchant_id, checked, event_types)
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        common.fail("--idempotency-key is 1-255 printable ASCII characters")
    config = common.settings()
    wanted = endpoints.Creation(merchant_id, checked, event_types, webhooks.actor(), key)
    found, secret, created = _run(
        webhooks.add(config.database_url, _cipher(config.key_encryption_key), wanted), config.database_url
    )
    common.out.print(f"{found.endpoint_id}: {found.status} {found.url} ({', '.join(found.event_types)})")
    if not created:
        common.err.print("It existed already (the same command made it before).", markup=False)
    _print_secret(secret, found.endpoint_id)


@app.command("endpoint")
def show_endpoint(endpoint_id: EndpointArgument) -> None:
    """One endpoint and its changes: who created, rotated, disabled, enabled it."""
    url = common.settings().database_url
    found, history = _run(webhooks.show_endpoint(url, endpoint_id), url)
    table = Table(title=f"webhook endpoint {found.endpoint_id}", show_header=False)
    table.add_column("field")
    table.add_column("value")
    for field, value in (
        ("merchant", found.merchant_id),
        ("url", found.url),
        ("events", ", ".join(found.event_types)),
        (
            "status",
            found.status if found.disabled_reason is None else f"{found.status}: {found.disabled_reason}",
        ),
        ("failing since", _when(found.failing_since)),
        ("previous secret signs until", _when(found.previous_secret_until)),
    ):
        table.add_row(field, value)
    for entry in history:
        table.add_row(
            _when(entry.at), f"{entry.action} by {entry.actor}" + (f" {entry.detail}" if entry.detail else "")
        )
    common.print_table(table)


@app.command("rotate")
def rotate(
    endpoint_id: EndpointArgument,
    grace: Annotated[
        int, typer.Option("--grace", min=0, max=30 * 86_400, help="Seconds the old secret still signs.")
    ] = 86_400,
) -> None:
    """A new signing secret; the old one signs too (a second signature) for --grace more seconds."""
    config = common.settings()
    cipher = _cipher(config.key_encryption_key)
    found, secret = _run(
        webhooks.rotate(config.database_url, cipher, endpoint_id, grace), config.database_url
    )
    _print_secret(secret, found.endpoint_id)
    if found.previous_secret_until is not None:
        common.err.print(f"The previous secret signs too until {_when(found.previous_secret_until)}.")


@app.command("disable")
def disable(
    endpoint_id: EndpointArgument,
    reason: Annotated[str | None, typer.Option("--reason", help="Why (shown with the endpoint).")] = None,
) -> None:
    """Stop delivering to an endpoint (what is pending fails; replay it once enabled again)."""
    if reason is not None and (len(reason) > 500 or not reason.isprintable()):
        common.fail("--reason is one line of at most 500 characters")
    url = common.settings().database_url
    found = _run(webhooks.disable(url, endpoint_id, reason), url)
    common.out.print(f"{found.endpoint_id}: {found.status} ({found.disabled_reason})")


@app.command("enable")
def enable(endpoint_id: EndpointArgument) -> None:
    """Deliver to a disabled endpoint again."""
    url = common.settings().database_url
    found = _run(webhooks.enable(url, endpoint_id), url)
    common.out.print(f"{found.endpoint_id}: {found.status}")


def _delivery_row(d: deliveries.Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "webhookId": d.webhook_id,
        "endpointId": d.endpoint_id,
        "merchantId": d.merchant_id,
        "eventType": d.event_type,
        "intentId": d.intent_id,
        "status": d.status,
        "attempts": d.attempts,
        "nextAttemptAt": d.next_attempt_at.isoformat(),
        "replayBy": d.replay_by,
        "lastStatusCode": d.last_status_code,
        "lastError": d.last_error,
        "createdAt": d.created_at.isoformat(),
        "deliveredAt": None if d.delivered_at is None else d.delivered_at.isoformat(),
    }


@app.command("deliveries")
def list_deliveries(
    merchant_id: Annotated[str | None, typer.Option("--merchant", help="Only this merchant's.")] = None,
    endpoint_id: Annotated[str | None, typer.Option("--endpoint", help="Only this endpoint's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help=f"Only in this status: {', '.join(DELIVERY_STATUSES)}.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000)] = 50,
    json_output: Annotated[
        bool, typer.Option("--json", help="One JSON object per delivery per line.")
    ] = False,
) -> None:
    """Deliveries, newest first."""
    _checked(merchant_id, ID_PATTERN, "merchant id")
    _checked(endpoint_id, ENDPOINT_ID_PATTERN, "endpoint id")
    wanted = None if status is None else status.upper()
    if wanted is not None and wanted not in DELIVERY_STATUSES:
        common.fail(f"--status is one of {', '.join(DELIVERY_STATUSES)}, not {status!r}")
    url = common.settings().database_url
    found = _run(
        webhooks.page(url, merchant_id=merchant_id, endpoint=endpoint_id, status=wanted, limit=limit), url
    )
    if json_output:
        for d in found:
            typer.echo(json.dumps(_delivery_row(d)))
        return
    table = Table(title=f"{len(found)} webhook deliveries")
    for column in ("id", "event", "endpoint", "status", "attempts", "last", "created", "replayed by"):
        table.add_column(column)
    for d in found:
        last = (
            "-"
            if d.last_status_code is None and d.last_error is None
            else str(d.last_status_code or d.last_error)
        )
        table.add_row(
            str(d.id),
            d.event_type,
            d.endpoint_id,
            d.status,
            str(d.attempts),
            last,
            _when(d.created_at),
            d.replay_by or "-",
        )
    common.print_table(table)


@app.command("show")
def show(
    delivery_id: DeliveryArgument,
    json_output: Annotated[bool, typer.Option("--json", help="As one JSON document.")] = False,
) -> None:
    """A delivery: the body it sends and every attempt (when, how, what came back)."""
    url = common.settings().database_url
    found = _run(webhooks.show(url, delivery_id), url)
    attempts = [
        {
            "attempt": a.attempt,
            "trigger": a.trigger,
            "at": a.at.isoformat(),
            "statusCode": a.status_code,
            "error": a.error,
            "latencyMs": a.latency_ms,
            "responseExcerpt": a.response_excerpt,
            "actor": a.actor,
        }
        for a in found.attempts
    ]
    payload = found.payload.decode("utf-8", errors="replace")
    if json_output:
        typer.echo(json.dumps({**_delivery_row(found.delivery), "payload": payload, "attemptLog": attempts}))
        return
    d = found.delivery
    common.out.print(
        f"delivery {d.id} ({d.webhook_id}): {d.event_type} to {d.endpoint_id} of {d.merchant_id}, "
        f"{d.status}, {d.attempts} attempt(s)" + (f", replay asked by {d.replay_by}" if d.replay_by else ""),
        markup=False,
        soft_wrap=True,
    )
    common.out.print(f"body: {payload}", markup=False, soft_wrap=True)
    table = Table(title="attempts")
    for column in ("#", "trigger", "at", "status", "error", "ms", "answer", "by"):
        table.add_column(column)
    for a in attempts:
        table.add_row(*("-" if a[k] is None else str(a[k]) for k in a))
    common.print_table(table)


@app.command("replay")
def replay(
    delivery_id: DeliveryArgument,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask first.")] = False,
) -> None:
    """Deliver it again: due now, whatever its status (the sender's next attempt is a replay, with the
    same webhook-id and body). Refused for a disabled endpoint."""
    url = common.settings().database_url
    if not yes:
        d = _run(webhooks.show(url, delivery_id), url).delivery
        common.out.print(
            f"delivery {d.id}: {d.event_type} to {d.endpoint_id}, {d.status} after {d.attempts} attempt(s)",
            markup=False,
        )
        if not typer.confirm("Deliver it again?"):
            common.fail("not replayed", common.EXIT_FAILED)
    done = _run(webhooks.replay(url, delivery_id), url)
    common.out.print(f"delivery {done.id}: {done.status}, due now (replay by {done.replay_by})", markup=False)
