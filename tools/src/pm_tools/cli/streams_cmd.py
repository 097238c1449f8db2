"""`pm streams`: length, lag, pending, oldest pending age, consumers and DLQ size per stream and group;
on a Redis Cluster also the master serving each partition (a "Node" column, `node` in the JSON).

The figures are `pm_tools.stream_status`'s; this module reads options and prints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import typer
from rich.table import Table
from rich.text import Text

from pm_shared.streams import names
from pm_shared.streams.connection import master_of
from pm_shared.streams.provision import RedisVersionError, provision
from pm_tools.cli import common
from pm_tools.cli.formats import human_age
from pm_tools.stream_status import StreamRow, collect


def _count(value: int | None) -> Text:
    return Text("—" if value is None else str(value))


def _table(rows: Sequence[StreamRow], nodes: Mapping[str, str]) -> Table:
    table = Table(title="Streams")
    table.add_column("Stream", overflow="fold")
    if nodes:
        table.add_column("Node", overflow="fold")
    table.add_column("Group", overflow="fold")
    table.add_column("Length", justify="right", overflow="fold")
    table.add_column("Lag", justify="right", overflow="fold")
    table.add_column("Pending", justify="right", overflow="fold")
    table.add_column("Oldest pending", justify="right", overflow="fold")
    table.add_column("Consumers", justify="right", overflow="fold")
    table.add_column("DLQ", justify="right", overflow="fold")
    for row in rows:
        key = [Text(row.key), Text(nodes.get(row.key, ""))] if nodes else [Text(row.key)]
        if not row.provisioned:
            table.add_row(
                *key,
                Text(row.group),
                Text("not provisioned", style="yellow"),
                *(Text("—") for _ in range(4)),
                _count(row.dlq_length),
            )
            continue
        lag = Text("unknown", style="yellow") if row.lag is None else Text(str(row.lag))
        dlq = Text(str(row.dlq_length), style="bold red" if row.dlq_length else "")
        table.add_row(
            *key,
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
        nodes = {row.key: node for row in rows if (node := await master_of(redis, row.key)) is not None}
    if json_out:
        document: Any = rows
        if nodes:
            document = [{**msgspec.to_builtins(row), "node": nodes.get(row.key)} for row in rows]
        typer.echo(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
        return
    common.print_table(_table(rows, nodes))
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
