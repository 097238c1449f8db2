"""`pm dlq`: list, show, replay and purge dead-lettered records (dry run unless `--yes`).

The work is `pm_tools.dlq`; this module reads options and prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
import typer
from redis.asyncio import Redis
from rich.table import Table
from rich.text import Text

from pm_shared.settings import CommonSettings
from pm_shared.streams.dlq import DlqEntry
from pm_tools import dlq
from pm_tools.cli import common
from pm_tools.dlq import Record, Replayed, Selection

app = typer.Typer(help="Dead-letter queues: list, show, replay, purge", no_args_is_help=True)

ERROR_WIDTH = 60

StreamOption = Annotated[
    str | None,
    typer.Option(
        "--stream",
        metavar="NAME",
        show_default=False,
        help="Logical stream (e.g. pm:intents); default: every stream.",
    ),
]
IdsOption = Annotated[
    list[str] | None,
    typer.Option(
        "--id", metavar="ID", show_default=False, help="DLQ entry id (repeatable), as `pm dlq list` shows it."
    ),
]
ReasonOption = Annotated[
    str | None,
    typer.Option(
        "--reason",
        metavar="REASON",
        show_default=False,
        help="Only records with this reason (e.g. max_deliveries).",
    ),
]
LimitOption = Annotated[
    int | None,
    typer.Option(
        "--limit", metavar="N", min=1, show_default=False, help="At most this many records, oldest first."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
YesOption = Annotated[bool, typer.Option("--yes", help="Really do it; without it this is a dry run.")]
AllOption = Annotated[
    bool, typer.Option("--all", help="Allow acting on every record when no --stream/--id/--reason is given.")
]


def _selection(
    stream: str | None,
    ids: Sequence[str] | None,
    reason: str | None,
    limit: int | None,
    config: CommonSettings,
) -> Selection:
    """The filters, validated (exit 2 on a bad one) before anything talks to Redis."""
    try:
        return dlq.selection(stream, ids, reason, limit, config.stream_partitions)
    except ValueError as exc:
        common.fail(str(exc))


def _acting(
    stream: str | None,
    ids: Sequence[str] | None,
    reason: str | None,
    limit: int | None,
    everything: bool,
    redis_url: str | None,
    verb: str,
) -> tuple[CommonSettings, Selection, str]:
    """Settings, selection and Redis URL of a command that changes records (`verb` them); acting on
    every record without --all exits 2."""
    config = common.settings()
    selection = _selection(stream, ids, reason, limit, config)
    if stream is None and not selection.ids and selection.reason is None and not everything:
        common.fail(
            f"refusing to {verb} every DLQ record: narrow the selection with --stream, --id or --reason, "
            f"or pass --all to {verb} them all"
        )
    return config, selection, common.redis_url(redis_url, config)


# --- presentation -----------------------------------------------------------------------------


def _truncate(text: str, width: int = ERROR_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _cell(value: str | None) -> Text:
    return Text(value if value else "—")


def _print_json(records: Sequence[Record]) -> None:
    typer.echo(msgspec.json.format(msgspec.json.encode(records), indent=2).decode())


def _list_table(records: Sequence[Record], title: str) -> Table:
    table = Table(title=title)
    for column in ("DLQ", "ID", "Original", "Reason", "Attempts", "Error", "First failure", "Last failure"):
        table.add_column(column, justify="right" if column == "Attempts" else "left", overflow="fold")
    table.add_column("Intent", overflow="fold")
    table.add_column("Message", overflow="fold")
    for r in records:
        table.add_row(
            Text(r.dlq),
            Text(r.id),
            Text(f"{r.original_stream} {r.original_id}".strip() or "—"),
            _cell(r.reason),
            _cell(None if r.attempts is None else str(r.attempts)),
            _cell(_truncate(r.error)),
            _cell(r.first_failure_at),
            _cell(r.last_failure_at),
            _cell(r.intent_id),
            _cell(r.message_id),
        )
    return table


def _brief_table(entries: Sequence[DlqEntry], title: str) -> Table:
    table = Table(title=title)
    for column in ("DLQ", "ID", "Original", "Reason", "Intent", "Message"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        decoded = dlq.payload_json(entry.payload)
        table.add_row(
            Text(entry.dlq),
            Text(entry.id),
            Text(f"{entry.original_stream} {entry.fields.get('original_id', '')}".strip() or "—"),
            _cell(entry.reason),
            _cell(dlq.payload_field(decoded, "intent_id")),
            _cell(dlq.payload_field(decoded, "message_id")),
        )
    return table


def _show(record: Record) -> None:
    table = Table(show_header=False, box=None, title=f"{record.dlq} {record.id}", title_justify="left")
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    table.add_row("dlq", Text(record.dlq))
    table.add_row("id", Text(record.id))
    table.add_row("intent_id", _cell(record.intent_id))
    table.add_row("message_id", _cell(record.message_id))
    for name, value in record.fields.items():
        table.add_row(Text(name), Text(value))
    common.print_table(table)
    if record.payload is not None:
        common.out.print("payload (JSON):", style="bold")
        pretty = msgspec.json.format(bytes(record.payload), indent=2).decode()
        common.out.print(pretty, markup=False, highlight=False, soft_wrap=True)
    elif record.payload_text is not None:
        common.out.print("payload (not JSON, escaped):", style="bold")
        common.out.print(record.payload_text, markup=False, highlight=False, soft_wrap=True)
    else:
        common.out.print("payload: none (the entry was deleted before it was dead-lettered)")


def _report_missing(missing: Sequence[str], selection: Selection) -> None:
    for entry_id in missing:
        common.warn(f"not found: no DLQ record {entry_id} in {selection.describe()}")


def _none_match(selection: Selection) -> None:
    common.out.print(f"no DLQ records in {selection.describe()} match", markup=False, soft_wrap=True)


def _print_replayed(outcome: Replayed, chosen: int) -> None:
    if outcome.done:
        table = Table(title=f"Replayed {len(outcome.done)} of {chosen} record(s)")
        for column in ("DLQ", "DLQ id", "→", "Stream", "New id", "Message"):
            table.add_column(column, overflow="fold")
        for entry, new_id in outcome.done:
            table.add_row(
                Text(entry.dlq),
                Text(entry.id),
                Text("→"),
                Text(entry.original_stream),
                Text(new_id),
                _cell(dlq.payload_field(dlq.payload_json(entry.payload), "message_id")),
            )
        common.print_table(table)
    else:
        common.out.print(f"replayed 0 of {chosen} record(s)")
    for entry, problem in outcome.failed:
        common.warn(f"failed: {entry.dlq} {entry.id}: {problem}")
    if outcome.backpressure is not None:
        exc = outcome.backpressure
        common.warn(
            f"back-pressure: {exc.stream} has {exc.outstanding} entries outstanding "
            f"(threshold {exc.threshold}); stopped after {len(outcome.done)} of {chosen} record(s)"
        )
        common.warn(
            f"not replayed ({len(outcome.not_tried)}): "
            + ", ".join(f"{e.dlq} {e.id}" for e in outcome.not_tried)
        )
        common.warn(f"retry after {exc.retry_after_s:g}s, once the consumers have caught up")


# --- commands ---------------------------------------------------------------------------------


@app.command("list")
def list_(
    stream: StreamOption = None,
    ids: IdsOption = None,
    reason: ReasonOption = None,
    limit: LimitOption = None,
    json_out: JsonOption = False,
    redis_url: common.RedisUrlOption = None,
) -> None:
    """List DLQ records, oldest first."""
    config = common.settings()
    selection = _selection(stream, ids, reason, limit, config)
    url = common.redis_url(redis_url, config)

    async def go() -> tuple[list[DlqEntry], list[str]]:
        async with common.redis_client(url) as redis:
            return await dlq.select(redis, selection)

    found, missing = common.run(go(), url)
    records = [dlq.record(e) for e in found]
    if json_out:
        _print_json(records)
    elif records:
        common.print_table(_list_table(records, f"DLQ records ({len(records)})"))
    else:
        _none_match(selection)
    if missing:
        _report_missing(missing, selection)
        raise typer.Exit(common.EXIT_FAILED)


@app.command("show")
def show(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="DLQ entry id, as `pm dlq list` shows it.")],
    stream: StreamOption = None,
    json_out: JsonOption = False,
    redis_url: common.RedisUrlOption = None,
) -> None:
    """Everything about one DLQ record, with its payload."""
    config = common.settings()
    selection = _selection(stream, [entry_id], None, None, config)
    url = common.redis_url(redis_url, config)

    async def go() -> list[DlqEntry]:
        async with common.redis_client(url) as redis:
            return (await dlq.select(redis, selection))[0]

    found = common.run(go(), url)
    if not found:
        common.fail(f"no DLQ record {entry_id} in {selection.describe()}", common.EXIT_FAILED)
    records = [dlq.record(e) for e in found]
    if json_out:
        _print_json(records)
        return
    if len(records) > 1:
        common.warn(f"{len(records)} DLQs hold a record {entry_id}; pass --stream to pick one")
    for record in records:
        _show(record)


async def _chosen(
    redis: Redis, selection: Selection, yes: bool, verb: str, done: str
) -> tuple[list[DlqEntry], int | None]:
    """The records to `verb` and the exit code so far (None: nothing amiss yet); none, with the exit
    code, when nothing matches or this is a dry run, after saying so (`done`: `verb` in the past)."""
    chosen, missing = await dlq.select(redis, selection)
    _report_missing(missing, selection)
    unfound = common.EXIT_FAILED if missing else common.EXIT_OK
    if not chosen:
        _none_match(selection)
        return [], unfound
    if not yes:
        common.print_table(_brief_table(chosen, f"{len(chosen)} DLQ record(s) would be {done}"))
        common.out.print(f"dry run: pass --yes to {verb}")
        return [], unfound
    return chosen, None if not missing else common.EXIT_FAILED


@app.command("replay")
def replay(
    stream: StreamOption = None,
    ids: IdsOption = None,
    reason: ReasonOption = None,
    limit: LimitOption = None,
    yes: YesOption = False,
    everything: AllOption = False,
    redis_url: common.RedisUrlOption = None,
) -> None:
    """Put records back on their original stream with the same payload (dry run unless --yes)."""
    config, selection, url = _acting(stream, ids, reason, limit, everything, redis_url, "replay")

    async def go() -> int:
        async with common.redis_client(url) as redis:
            chosen, code = await _chosen(redis, selection, yes, "replay", "replayed")
            if not chosen:
                return code or common.EXIT_OK
            outcome = await dlq.replay(redis, config, chosen)
        _print_replayed(outcome, len(chosen))
        if outcome.backpressure is not None:
            return common.EXIT_BACKPRESSURE
        return common.EXIT_FAILED if outcome.failed or code else common.EXIT_OK

    raise typer.Exit(common.run(go(), url))


@app.command("purge")
def purge(
    stream: StreamOption = None,
    ids: IdsOption = None,
    reason: ReasonOption = None,
    limit: LimitOption = None,
    yes: YesOption = False,
    everything: AllOption = False,
    redis_url: common.RedisUrlOption = None,
) -> None:
    """Delete records for good (dry run unless --yes)."""
    _, selection, url = _acting(stream, ids, reason, limit, everything, redis_url, "purge")

    async def go() -> int:
        async with common.redis_client(url) as redis:
            chosen, code = await _chosen(redis, selection, yes, "purge", "purged")
            if not chosen:
                return code or common.EXIT_OK
            deleted = await dlq.purge(redis, chosen)
        common.out.print(f"purged {deleted} DLQ record(s)")
        if deleted < len(chosen):
            common.warn(f"{len(chosen) - deleted} selected record(s) were already gone")
            return common.EXIT_FAILED
        return code or common.EXIT_OK

    raise typer.Exit(common.run(go(), url))
