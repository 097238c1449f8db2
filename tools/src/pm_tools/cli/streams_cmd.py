"""`pm streams`: length, lag, pending, oldest pending age, consumers and DLQ size per stream and group."""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import typer
from redis.asyncio import Redis
from rich.table import Table
from rich.text import Text

from pm_shared.streams import names
from pm_shared.streams.provision import RedisVersionError, provision
from pm_shared.streams.stats import partition_stats
from pm_tools.cli import common


class StreamRow(msgspec.Struct, kw_only=True):
    """One consumer group of one stream partition, as printed (and as `--json` emits it)."""

    stream: str
    partition: int
    key: str
    group: str
    provisioned: bool
    """False when the partition or this group does not exist yet; the figures are then null."""
    length: int | None
    lag: int | None
    """Null when Redis cannot tell (an undelivered entry was deleted); never reported as 0."""
    pending: int | None
    oldest_pending_age_s: float | None
    consumers: int | None
    dlq_length: int | None


async def collect(redis: Redis, specs: Sequence[names.StreamSpec], partitions: int) -> list[StreamRow]:
    """A row per (stream partition, consumer group): the groups Redis knows, then missing expected ones."""
    rows: list[StreamRow] = []
    for spec in specs:
        for partition in range(partitions):
            key = names.stream_key(spec.name, partition)
            stats = await partition_stats(redis, key, spec.name, partition)
            for s in stats:
                rows.append(
                    StreamRow(
                        stream=spec.name,
                        partition=partition,
                        key=key,
                        group=s.group,
                        provisioned=True,
                        length=s.length,
                        lag=s.lag,
                        pending=s.pending,
                        oldest_pending_age_s=s.oldest_pending_age_s,
                        consumers=s.consumers,
                        dlq_length=s.dlq_length,
                    )
                )
            present = {s.group for s in stats}
            for group in spec.groups:
                if group not in present:
                    rows.append(
                        StreamRow(
                            stream=spec.name,
                            partition=partition,
                            key=key,
                            group=group,
                            provisioned=False,
                            length=stats[0].length if stats else None,
                            lag=None,
                            pending=None,
                            oldest_pending_age_s=None,
                            consumers=None,
                            dlq_length=stats[0].dlq_length if stats else None,
                        )
                    )
    return rows


def human_age(seconds: float | None) -> str:
    """1.2s, 3m4s, 2h5m, 3d4h; an em dash when there is nothing pending."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f}s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


def _count(value: int | None) -> Text:
    return Text("—" if value is None else str(value))


def _table(rows: Sequence[StreamRow]) -> Table:
    table = Table(title="Streams")
    table.add_column("Stream", overflow="fold")
    table.add_column("Group", overflow="fold")
    table.add_column("Length", justify="right", overflow="fold")
    table.add_column("Lag", justify="right", overflow="fold")
    table.add_column("Pending", justify="right", overflow="fold")
    table.add_column("Oldest pending", justify="right", overflow="fold")
    table.add_column("Consumers", justify="right", overflow="fold")
    table.add_column("DLQ", justify="right", overflow="fold")
    for row in rows:
        if not row.provisioned:
            table.add_row(
                Text(row.key),
                Text(row.group),
                Text("not provisioned", style="yellow"),
                *(Text("—") for _ in range(4)),
                _count(row.dlq_length),
            )
            continue
        lag = Text("unknown", style="yellow") if row.lag is None else Text(str(row.lag))
        dlq = Text(str(row.dlq_length), style="bold red" if row.dlq_length else "")
        table.add_row(
            Text(row.key),
            Text(row.group),
            _count(row.length),
            lag,
            _count(row.pending),
            Text(human_age(row.oldest_pending_age_s)),
            _count(row.consumers),
            dlq,
        )
    return table


async def _streams(url: str, partitions: int, json_out: bool, provision_first: bool) -> None:
    specs = names.ALL_STREAMS
    async with common.redis_client(url) as redis:
        if provision_first:
            try:
                created = await provision(redis, partitions, specs)
            except RedisVersionError as exc:
                common.fail(str(exc))
            message = (
                f"provisioned {len(specs)} stream(s) × {partitions} partition(s): {created} group(s) created"
            )
            # With --json, stdout carries only the JSON document.
            (common.err if json_out else common.out).print(message, markup=False, soft_wrap=True)
        rows = await collect(redis, specs, partitions)
    if json_out:
        typer.echo(msgspec.json.format(msgspec.json.encode(rows), indent=2).decode())
        return
    common.print_table(_table(rows))
    if any(row.provisioned and row.lag is None for row in rows):
        common.out.print(
            "lag unknown: Redis cannot count it after an undelivered entry was deleted; "
            "it is valid again once the group reads past the last entry.",
            markup=False,
            soft_wrap=True,
        )
    if any(not row.provisioned for row in rows):
        common.out.print("some groups are not provisioned: run `pm streams --provision` (or `pm up`).")


def streams(
    redis_url: common.RedisUrlOption = None,
    partitions: int | None = typer.Option(
        None,
        "--partitions",
        metavar="N",
        min=1,
        show_default=False,
        help="Partitions per stream; default PM_STREAM_PARTITIONS.",
    ),
    json_out: bool = typer.Option(
        False, "--json", help="Print a JSON array for scripts (lag null when unknown)."
    ),
    provision_first: bool = typer.Option(
        False, "--provision", help="First create every missing stream partition and consumer group."
    ),
) -> None:
    """Length, lag, pending, oldest pending age, consumers and DLQ size per stream partition and group."""
    config = common.settings()
    url = common.redis_url(redis_url, config)
    common.run(_streams(url, partitions or config.stream_partitions, json_out, provision_first), url)
