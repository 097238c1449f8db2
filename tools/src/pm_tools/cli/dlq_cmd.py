"""`pm dlq`: list, show, replay and purge dead-lettered records (dry run unless `--yes`)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgspec
import typer
from redis.asyncio import Redis
from rich.table import Table
from rich.text import Text

from pm_shared.settings import CommonSettings
from pm_shared.streams import BackPressureError, Publisher, dlq, names
from pm_shared.streams.dlq import DlqEntry
from pm_tools.cli import common

app = typer.Typer(help="Dead-letter queues: list, show, replay, purge", no_args_is_help=True)

_ENTRY_ID = re.compile(r"\d+-\d+")
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


@dataclass(frozen=True)
class Selection:
    """Which DLQ records a command works on."""

    specs: tuple[names.StreamSpec, ...]
    partitions: int
    ids: tuple[str, ...] = ()
    reason: str | None = None
    limit: int | None = None

    @property
    def keys(self) -> list[str]:
        return dlq.dlq_keys([s.name for s in self.specs], self.partitions)

    def describe(self) -> str:
        return ", ".join(s.name for s in self.specs)


def _selection(
    stream: str | None,
    ids: Sequence[str] | None,
    reason: str | None,
    limit: int | None,
    config: CommonSettings,
) -> Selection:
    """Validate the filters (exit 2 on a bad one) before anything talks to Redis."""
    if stream is None:
        specs = tuple(names.ALL_STREAMS)
    else:
        try:
            specs = (names.spec(stream),)
        except ValueError as exc:
            common.fail(str(exc))
    wanted: list[str] = []
    for entry_id in ids or ():
        if not _ENTRY_ID.fullmatch(entry_id):
            common.fail(f"invalid entry id {entry_id!r}: expected <ms>-<seq> as `pm dlq list` shows it")
        if entry_id not in wanted:
            wanted.append(entry_id)
    return Selection(specs, config.stream_partitions, tuple(wanted), reason or None, limit)


async def _select(redis: Redis, selection: Selection) -> tuple[list[DlqEntry], list[str]]:
    """The matching records (oldest first, at most `limit`) and the requested ids that matched nothing."""
    found = await dlq.entries(
        redis,
        selection.keys,
        ids=selection.ids,
        reason=selection.reason,
        # With ids, apply the limit afterwards so an id beyond it is not reported as missing.
        limit=None if selection.ids else selection.limit,
    )
    seen = {e.id for e in found}
    missing = [i for i in selection.ids if i not in seen]
    if selection.limit is not None:
        found = found[: selection.limit]
    return found, missing


# --- presentation -----------------------------------------------------------------------------


def _payload_json(payload: bytes | None) -> Any:
    """The payload decoded as JSON, or None when there is none or it is not JSON."""
    if payload is None:
        return None
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return None


def _payload_field(decoded: Any, field: str) -> str | None:
    if isinstance(decoded, dict):
        value = decoded.get(field)
        if isinstance(value, str):
            return value
    return None


def _escaped(payload: bytes) -> str:
    """Bytes that are not JSON, readable: UTF-8 where valid, escapes for everything else."""
    text = payload.decode("utf-8", errors="backslashreplace")
    return "".join(c if c.isprintable() or c == "\n" else repr(c)[1:-1] for c in text)


def _truncate(text: str, width: int = ERROR_WIDTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


class Record(msgspec.Struct, kw_only=True):
    """A DLQ record as `--json` prints it."""

    dlq: str
    id: str
    original_stream: str
    original_id: str
    group: str
    consumer: str
    reason: str
    attempts: int | None
    error: str
    first_failure_at: str
    last_failure_at: str
    intent_id: str | None
    message_id: str | None
    fields: dict[str, str]
    """Every stored field but the payload (including any extra ones)."""
    payload: msgspec.Raw | None
    """The payload as JSON when it is JSON."""
    payload_text: str | None
    """The payload, escaped, when it is not JSON."""


def _record(entry: DlqEntry) -> Record:
    decoded = _payload_json(entry.payload)
    is_json = entry.payload is not None and decoded is not None
    attempts = entry.fields.get("attempts", "")
    return Record(
        dlq=entry.dlq,
        id=entry.id,
        original_stream=entry.original_stream,
        original_id=entry.fields.get("original_id", ""),
        group=entry.fields.get("group", ""),
        consumer=entry.fields.get("consumer", ""),
        reason=entry.reason,
        attempts=int(attempts) if attempts.isdigit() else None,
        error=entry.fields.get("error", ""),
        first_failure_at=entry.fields.get("first_failure_at", ""),
        last_failure_at=entry.fields.get("last_failure_at", ""),
        intent_id=_payload_field(decoded, "intent_id"),
        message_id=_payload_field(decoded, "message_id"),
        fields=entry.fields,
        payload=msgspec.Raw(entry.payload) if is_json and entry.payload is not None else None,
        payload_text=_escaped(entry.payload) if entry.payload is not None and not is_json else None,
    )


def _cell(value: str | None) -> Text:
    return Text(value if value else "—")


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


def _report_missing(missing: Sequence[str], selection: Selection) -> None:
    for entry_id in missing:
        common.warn(f"not found: no DLQ record {entry_id} in {selection.describe()}")


def _selection_title(verb: str, count: int) -> str:
    return f"{count} DLQ record(s) {verb}"


def _guard(selection: Selection, stream: str | None, everything: bool, verb: str) -> None:
    if stream is None and not selection.ids and selection.reason is None and not everything:
        common.fail(
            f"refusing to {verb} every DLQ record: narrow the selection with --stream, --id or --reason, "
            f"or pass --all to {verb} them all"
        )


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
            return await _select(redis, selection)

    found, missing = common.run(go(), url)
    records = [_record(e) for e in found]
    if json_out:
        typer.echo(msgspec.json.format(msgspec.json.encode(records), indent=2).decode())
    elif records:
        common.print_table(_list_table(records, f"DLQ records ({len(records)})"))
    else:
        common.out.print(f"no DLQ records in {selection.describe()} match", markup=False, soft_wrap=True)
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
            return (await _select(redis, selection))[0]

    found = common.run(go(), url)
    if not found:
        common.fail(f"no DLQ record {entry_id} in {selection.describe()}", common.EXIT_FAILED)
    records = [_record(e) for e in found]
    if json_out:
        typer.echo(msgspec.json.format(msgspec.json.encode(records), indent=2).decode())
        return
    if len(records) > 1:
        common.warn(f"{len(records)} DLQs hold a record {entry_id}; pass --stream to pick one")
    for record in records:
        _show(record)


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
    config = common.settings()
    selection = _selection(stream, ids, reason, limit, config)
    _guard(selection, stream, everything, "replay")
    url = common.redis_url(redis_url, config)
    code = common.run(_replay(url, selection, config, yes), url)
    raise typer.Exit(code)


@dataclass
class _Outcome:
    done: list[tuple[DlqEntry, str]]
    failed: list[tuple[DlqEntry, str]]
    not_tried: list[DlqEntry]
    backpressure: BackPressureError | None = None


async def _replay_each(redis: Redis, publisher: Publisher, chosen: Sequence[DlqEntry]) -> _Outcome:
    outcome = _Outcome(done=[], failed=[], not_tried=[])
    for index, entry in enumerate(chosen):
        try:
            outcome.done.append((entry, await dlq.replay(redis, publisher, entry)))
        except BackPressureError as exc:
            outcome.backpressure = exc
            outcome.not_tried = list(chosen[index:])
            break
        except dlq.ReplayError as exc:
            outcome.failed.append((entry, str(exc)))
    return outcome


def _brief_table(entries: Sequence[DlqEntry], title: str) -> Table:
    table = Table(title=title)
    for column in ("DLQ", "ID", "Original", "Reason", "Intent", "Message"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        decoded = _payload_json(entry.payload)
        table.add_row(
            Text(entry.dlq),
            Text(entry.id),
            Text(f"{entry.original_stream} {entry.fields.get('original_id', '')}".strip() or "—"),
            _cell(entry.reason),
            _cell(_payload_field(decoded, "intent_id")),
            _cell(_payload_field(decoded, "message_id")),
        )
    return table


async def _replay(url: str, selection: Selection, config: CommonSettings, yes: bool) -> int:
    async with common.redis_client(url) as redis:
        chosen, missing = await _select(redis, selection)
        _report_missing(missing, selection)
        if not chosen:
            common.out.print(f"no DLQ records in {selection.describe()} match", markup=False, soft_wrap=True)
            return common.EXIT_FAILED if missing else common.EXIT_OK
        if not yes:
            common.print_table(_brief_table(chosen, _selection_title("would be replayed", len(chosen))))
            common.out.print("dry run: pass --yes to replay")
            return common.EXIT_FAILED if missing else common.EXIT_OK
        publisher = Publisher(
            redis,
            partitions=config.stream_partitions,
            maxlen=config.stream_maxlen,
            threshold=config.backpressure_threshold,
        )
        outcome = await _replay_each(redis, publisher, chosen)
    if outcome.done:
        table = Table(title=f"Replayed {len(outcome.done)} of {len(chosen)} record(s)")
        for column in ("DLQ", "DLQ id", "→", "Stream", "New id", "Message"):
            table.add_column(column, overflow="fold")
        for entry, new_id in outcome.done:
            table.add_row(
                Text(entry.dlq),
                Text(entry.id),
                Text("→"),
                Text(entry.original_stream),
                Text(new_id),
                _cell(_payload_field(_payload_json(entry.payload), "message_id")),
            )
        common.print_table(table)
    else:
        common.out.print(f"replayed 0 of {len(chosen)} record(s)")
    for entry, problem in outcome.failed:
        common.warn(f"failed: {entry.dlq} {entry.id}: {problem}")
    if outcome.backpressure is not None:
        exc = outcome.backpressure
        common.warn(
            f"back-pressure: {exc.stream} has {exc.outstanding} entries outstanding "
            f"(threshold {exc.threshold}); stopped after {len(outcome.done)} of {len(chosen)} record(s)"
        )
        common.warn(
            f"not replayed ({len(outcome.not_tried)}): "
            + ", ".join(f"{e.dlq} {e.id}" for e in outcome.not_tried)
        )
        common.warn(f"retry after {exc.retry_after_s:g}s, once the consumers have caught up")
        return common.EXIT_BACKPRESSURE
    if outcome.failed or missing:
        return common.EXIT_FAILED
    return common.EXIT_OK


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
    config = common.settings()
    selection = _selection(stream, ids, reason, limit, config)
    _guard(selection, stream, everything, "purge")
    url = common.redis_url(redis_url, config)
    code = common.run(_purge(url, selection, yes), url)
    raise typer.Exit(code)


async def _purge(url: str, selection: Selection, yes: bool) -> int:
    async with common.redis_client(url) as redis:
        chosen, missing = await _select(redis, selection)
        _report_missing(missing, selection)
        if not chosen:
            common.out.print(f"no DLQ records in {selection.describe()} match", markup=False, soft_wrap=True)
            return common.EXIT_FAILED if missing else common.EXIT_OK
        if not yes:
            common.print_table(_brief_table(chosen, _selection_title("would be purged", len(chosen))))
            common.out.print("dry run: pass --yes to purge")
            return common.EXIT_FAILED if missing else common.EXIT_OK
        deleted = await dlq.purge(redis, chosen)
    common.out.print(f"purged {deleted} DLQ record(s)")
    if deleted < len(chosen):
        common.warn(f"{len(chosen) - deleted} selected record(s) were already gone")
        return common.EXIT_FAILED
    return common.EXIT_FAILED if missing else common.EXIT_OK
