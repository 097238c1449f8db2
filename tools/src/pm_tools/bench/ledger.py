"""Benchmark of the ledger: the bare embedded engine, and the real ledger-writer that drives it.

Each side runs in a throw-away database of its own, migrated for the occasion (the same accounts in
both) and dropped afterwards, so both start from an empty ledger.

- Bare: commands of 1, 2 (one linked chain) and 10 transfers are packed the way the ledger-writer
  packs them, into requests of up to 8189 events, and submitted back to back with full-batch
  `create_transfers` (goal on a 2-core machine: ≥ 20,000 transfers/s).
- Through the writer: `python -m pm_ledger_writer` runs as a real process, with its default
  settings, on that database and on Redis database 14 of the given server (reserved for this
  benchmark; only its `{pm:ledger:*` keys are deleted, before and after). The same kinds of
  commands go in on `pm:ledger:commands`; every result on `pm:ledger:results` must be `ok`.
  Two figures, in transfers per second:
  - backlog: the commands are published while the writer is paused (SIGSTOP), then it is resumed
    and timed until its last result is on the stream. This is the writer's own rate, as the bare
    figure is the engine's own rate (its requests are built before the clock starts); it is the
    one held to the goal (≥ 75 % of the bare engine, issue 19);
  - live: published in chunks while the writer runs, and the results read and acked as the
    orchestrator would, first publish to last result. On a 2-core machine the producer and the
    result reader take their share of the CPU the writer, Redis and PostgreSQL also need.
- Both sides run with the fleet's garbage-collector settings (`runtime.tune_gc`), and their runs
  are taken in turns (bare, backlog, live, bare, …), so a slow patch of a shared machine weighs
  on both alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import time
from asyncio.subprocess import Process
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import msgspec
import tigerbeetle as tb
from redis.asyncio import Redis
from redis.exceptions import ResponseError
from rich.console import Console
from rich.table import Table

from pm_shared import fleet, messages
from pm_shared.ledger import BATCH_MAX, Ledger, open_ledger
from pm_shared.runtime import tune_gc
from pm_shared.streams import BackPressureError, Publisher, connect, stream_key
from pm_shared.streams.names import GROUP_ORCHESTRATOR, LEDGER_COMMANDS, LEDGER_RESULTS
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.bench import harness, model, tables

GOAL = 20_000
WRITER_GOAL = 0.75
TIGERBEETLE_WRITER_GOAL = 0.80
"""The writer's goal against a real TigerBeetle (issue 19), whose requests cost the writer less."""
ACCOUNTS = 1_000
SIZES = (1, 2, 10)
THB = 764

STREAM_KEYS = "{pm:ledger:*"
"""The keys of the ledger's streams, the only ones deleted (before and after) in `harness.REDIS_DB`."""
RESULTS_TIMEOUT_S = 60.0
"""Longest wait without a single new result before the run is declared stuck."""
PUBLISH_CHUNK = 1_000
STREAM_MAXLEN = 1_000_000
"""Room for a whole run's commands and results: back-pressure is not what this measures."""
POLL_S = 0.002
BACKPRESSURE_SLEEP_S = 0.002
READ_COUNT = 2_000

_results = msgspec.json.Decoder(messages.LedgerResult)


@dataclass(frozen=True)
class Throughput:
    transfers: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.transfers / self.seconds


@dataclass(frozen=True)
class WriterRun:
    backlog: Throughput
    live: Throughput


@dataclass(frozen=True)
class LedgerRow:
    """One command size: the bare engine and, when it ran, the ledger-writer driving it."""

    per_command: int
    bare: Throughput
    writer: WriterRun | None = None
    engine: str = "embedded"
    """`embedded`, or `tigerbeetle` (a real cluster, `--ledger-url`)."""

    @property
    def ratio(self) -> float | None:
        """The writer's backlog rate over the bare engine's."""
        return None if self.writer is None else self.writer.backlog.rate / self.bare.rate

    @property
    def writer_goal(self) -> float:
        return TIGERBEETLE_WRITER_GOAL if self.engine == "tigerbeetle" else WRITER_GOAL

    @property
    def label(self) -> str:
        """The command size, and the engine when it is not the embedded one."""
        size = f"{self.per_command}" + (" (linked)" if self.per_command > 1 else "")
        return size if self.engine == "embedded" else f"{size}, TigerBeetle"


# --- bare engine --------------------------------------------------------------------------------


def _transfers(accounts: list[int], per_command: int, n: int) -> list[messages.LedgerTransfer]:
    """The transfers of the command starting at transfer number `n`: one chain when more than one."""
    transfers = []
    for leg in range(per_command):
        debit, credit = accounts[(n + leg) % len(accounts)], accounts[(n + leg + 1) % len(accounts)]
        linked = leg < per_command - 1
        transfers.append(
            messages.LedgerTransfer(
                id=tb.id(),
                debit_account_id=debit,
                credit_account_id=credit,
                amount=1,
                ledger=THB,
                code=1,
                flags=int(tb.TransferFlags.LINKED) if linked else 0,
            )
        )
    return transfers


def _engine_transfer(t: messages.LedgerTransfer) -> tb.Transfer:
    """`t` as the engine takes it (the same fields, its flags typed)."""
    return tb.Transfer(**{**msgspec.structs.asdict(t), "flags": tb.TransferFlags(t.flags)})


def _requests(accounts: list[int], per_command: int, total: int) -> list[list[tb.Transfer]]:
    """`total` transfers as commands of `per_command` (linked when > 1), packed whole into requests."""
    requests: list[list[tb.Transfer]] = [[]]
    for n in range(0, total, per_command):
        if len(requests[-1]) + per_command > BATCH_MAX:
            requests.append([])
        requests[-1].extend(_engine_transfer(t) for t in _transfers(accounts, per_command, n))
    return requests


async def _bare(ledger: Ledger, accounts: list[int], per_command: int, total: int, repeat: int) -> Throughput:
    runs = []
    for _ in range(repeat):
        requests = _requests(accounts, per_command, total)
        started = time.perf_counter()
        for request in requests:
            statuses = {r.status for r in await ledger.create_transfers(request)}
            if statuses != {tb.CreateTransferStatus.CREATED}:
                raise RuntimeError(f"benchmark transfers failed: {statuses}")
        runs.append(Throughput(sum(len(r) for r in requests), time.perf_counter() - started))
    return _best(runs)


# --- through the ledger-writer ------------------------------------------------------------------


@dataclass(frozen=True)
class _Line:
    """The ledger-writer being measured, and the clients that feed it and read its results."""

    publisher: Publisher
    redis: Redis
    reader: Redis
    """Its own connection for blocking reads."""
    writer: Process


@contextlib.asynccontextmanager
async def _writer(database_url: str, redis_url: str, extra: Mapping[str, str]) -> AsyncIterator[Process]:
    """A real ledger-writer, ready (the active writer, consuming); stopped on exit."""
    variables = harness.service_variables(database_url, redis_url, "ledger-writer")
    variables["PM_LEDGER_WRITER_LEASE_KEY"] = harness.WRITER_LEASE_KEY
    async with harness.started(fleet.LEDGER_WRITER, {**variables, **extra}) as writer:
        yield writer.process


def _commands(accounts: list[int], per_command: int, total: int) -> list[messages.LedgerCommand]:
    produced_at = messages.now()
    return [
        messages.LedgerCommand(
            intent_id=f"bench_{n}",
            message_id=messages.new_message_id(),
            produced_at=produced_at,
            step="bench",
            transfers=_transfers(accounts, per_command, n),
        )
        for n in range(0, total, per_command)
    ]


async def _publish(publisher: Publisher, commands: list[messages.LedgerCommand]) -> None:
    for start in range(0, len(commands), PUBLISH_CHUNK):
        chunk = commands[start : start + PUBLISH_CHUNK]
        while True:
            try:
                await publisher.publish_many(LEDGER_COMMANDS, chunk)
                break
            except BackPressureError:
                await asyncio.sleep(BACKPRESSURE_SLEEP_S)


async def _collect(reader: Redis, expected: set[str], writer: Process) -> None:
    """Read and ack results as the orchestrator would, until every command in `expected` has one."""
    key = stream_key(LEDGER_RESULTS.name, 0)
    consumer = f"pm-bench-{secrets.token_hex(4)}"
    missing = set(expected)
    last_progress = time.monotonic()
    while missing:
        reply: list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None = await reader.xreadgroup(  # type: ignore[assignment]
            GROUP_ORCHESTRATOR, consumer, {key: ">"}, count=READ_COUNT, block=500
        )
        entries = [entry for _, stream_entries in reply or [] for entry in stream_entries]
        if not entries:
            if writer.returncode is not None:
                raise RuntimeError(f"the ledger-writer exited with {writer.returncode} during the run")
            if time.monotonic() - last_progress > RESULTS_TIMEOUT_S:
                raise RuntimeError(f"{len(missing)} of {len(expected)} results did not arrive")
            continue
        last_progress = time.monotonic()
        for _, fields in entries:
            result = _results.decode(fields[PAYLOAD_FIELD])
            if result.command_id not in expected:
                continue  # a late repeat of an earlier run's result
            if not result.ok:
                raise RuntimeError(f"benchmark command failed through the writer: {result}")
            missing.discard(result.command_id)
        await reader.xack(key, GROUP_ORCHESTRATOR, *[entry_id for entry_id, _ in entries])


async def _through_writer(
    line: _Line, bare: Ledger, accounts: list[int], per_command: int, total: int, repeat: int
) -> tuple[Throughput, WriterRun]:
    """The bare engine's figure and the writer's for one command size, their runs taken in turns (bare,
    backlog, live, bare, …): a slow patch of a shared machine then weighs on both sides alike."""
    bare_runs, backlog, live = [], [], []
    for _ in range(repeat):
        bare_runs.append(await _bare(bare, accounts, per_command, total, 1))
        backlog.append(await _backlog(line, _commands(accounts, per_command, total)))
        live.append(await _live(line, _commands(accounts, per_command, total)))
    return _best(bare_runs), WriterRun(backlog=_best(backlog), live=_best(live))


def _best(runs: list[Throughput]) -> Throughput:
    return max(runs, key=lambda run: run.rate)


async def _backlog(line: _Line, commands: list[messages.LedgerCommand]) -> Throughput:
    """Publish with the writer paused; time it from resuming to its last result on the stream."""
    results = stream_key(LEDGER_RESULTS.name, 0)
    target = await line.redis.xlen(results) + len(commands)
    line.writer.send_signal(signal.SIGSTOP)
    try:
        await _publish(line.publisher, commands)
    finally:
        line.writer.send_signal(signal.SIGCONT)
    started = time.perf_counter()
    await _wait_for_length(line.redis, results, target, line.writer)
    elapsed = time.perf_counter() - started
    # Checked after the clock stopped: every result is there, `ok`, for one of these commands.
    await _collect(line.reader, {c.message_id for c in commands}, line.writer)
    return Throughput(sum(len(c.transfers) for c in commands), elapsed)


async def _wait_for_length(redis: Redis, key: str, target: int, writer: Process) -> None:
    length, last_progress = 0, time.monotonic()
    while (current := await redis.xlen(key)) < target:
        if current > length:
            length, last_progress = current, time.monotonic()
        elif writer.returncode is not None:
            raise RuntimeError(f"the ledger-writer exited with {writer.returncode} during the run")
        elif time.monotonic() - last_progress > RESULTS_TIMEOUT_S:
            raise RuntimeError(f"{target - current} results did not arrive")
        await asyncio.sleep(POLL_S)


async def _live(line: _Line, commands: list[messages.LedgerCommand]) -> Throughput:
    """Publish while the writer runs, reading and acking results meanwhile; first publish to last result."""
    collector = asyncio.create_task(_collect(line.reader, {c.message_id for c in commands}, line.writer))
    started = time.perf_counter()
    try:
        await _publish(line.publisher, commands)
        await collector
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector
    elapsed = time.perf_counter() - started
    return Throughput(sum(len(c.transfers) for c in commands), elapsed)


async def _writer_runs(
    bare: Ledger,
    database_url: str,
    redis_url: str,
    accounts: list[int],
    transfers: int,
    repeat: int,
    extra_env: Mapping[str, str],
) -> list[tuple[Throughput, WriterRun]]:
    url = harness.redis_url(redis_url)
    redis = connect(url, name="pm-bench")
    reader = connect(url, blocking_reads=True, name="pm-bench-reader")
    try:
        await harness.delete_keys(redis, [STREAM_KEYS])
        try:
            env = {"PM_STREAM_MAXLEN": str(STREAM_MAXLEN), **extra_env}
            async with _writer(database_url, url, env) as writer:
                # The writer provisioned the streams and groups when it became active.
                line = _Line(Publisher(redis, maxlen=STREAM_MAXLEN), redis, reader, writer)
                return [
                    await _through_writer(line, bare, accounts, size, transfers, repeat) for size in SIZES
                ]
        finally:
            with contextlib.suppress(ResponseError):
                await harness.delete_keys(redis, [STREAM_KEYS])
    finally:
        await reader.aclose()
        await redis.aclose()


# --- the run ------------------------------------------------------------------------------------


async def run(
    server_dsn: str,
    transfers: int,
    redis_url: str | None = None,
    writer_env: Mapping[str, str] | None = None,
    repeat: int = 1,
    ledger_url: str | None = None,
) -> list[LedgerRow]:
    """Bare figures for commands of 1, 2 and 10 transfers; with `redis_url`, through the writer too.

    Each figure is the best of `repeat` runs of `transfers` transfers.

    `writer_env`: extra `PM_*` variables for the writer (it gets none from this environment).
    `ledger_url`: a real TigerBeetle cluster (`tigerbeetle://…`), measured the same way after the
    embedded engine, on accounts of its own (`open_ledger`'s URL; needs `redis_url`).
    """
    rows = await _embedded_rows(server_dsn, transfers, redis_url, writer_env or {}, repeat)
    if ledger_url is not None:
        if redis_url is None:
            raise ValueError("a TigerBeetle run measures the writer too: give redis_url")
        rows += await _tigerbeetle_rows(
            server_dsn, ledger_url, transfers, redis_url, writer_env or {}, repeat
        )
    return rows


async def _embedded_rows(
    server_dsn: str, transfers: int, redis_url: str | None, writer_env: Mapping[str, str], repeat: int
) -> list[LedgerRow]:
    tune_gc()
    accounts = [tb.id() for _ in range(ACCOUNTS)]
    # Two databases, so each side writes to a ledger of its own that grows alike: a ledger that
    # already holds the other side's transfers is slower to write to.
    async with contextlib.AsyncExitStack() as databases:
        ledger = await _fresh_ledger(
            await databases.enter_async_context(harness.database(server_dsn, "bare")), accounts
        )
        try:
            if redis_url is None:
                bare = [await _bare(ledger, accounts, size, transfers, repeat) for size in SIZES]
                return [LedgerRow(size, b) for size, b in zip(SIZES, bare, strict=True)]
            writer_dsn = await databases.enter_async_context(harness.database(server_dsn, "writer"))
            # The writer must be its ledger's only writer while it runs: this one is closed first.
            await (await _fresh_ledger(writer_dsn, accounts)).close()
            pairs = await _writer_runs(ledger, writer_dsn, redis_url, accounts, transfers, repeat, writer_env)
        finally:
            await ledger.close()
        return [LedgerRow(size, b, w) for size, (b, w) in zip(SIZES, pairs, strict=True)]


async def _tigerbeetle_rows(
    server_dsn: str,
    ledger_url: str,
    transfers: int,
    redis_url: str,
    writer_env: Mapping[str, str],
    repeat: int,
) -> list[LedgerRow]:
    """The same runs against the cluster at `ledger_url`: bare through one client, and the writer
    configured with that URL (its database is a throw-away one, for what the writer keeps there)."""
    if not ledger_url.startswith("tigerbeetle://"):
        raise ValueError(f"not a TigerBeetle URL: {ledger_url!r}")
    accounts = [tb.id() for _ in range(ACCOUNTS)]  # new ids: the cluster keeps earlier runs' accounts
    async with harness.database(server_dsn, "writer-tb") as writer_dsn:
        ledger = await _fresh_ledger_at(ledger_url, accounts)
        try:
            env = {**writer_env, "PM_LEDGER_URL": ledger_url}
            pairs = await _writer_runs(ledger, writer_dsn, redis_url, accounts, transfers, repeat, env)
        finally:
            await ledger.close()
    return [LedgerRow(size, b, w, engine="tigerbeetle") for size, (b, w) in zip(SIZES, pairs, strict=True)]


async def _fresh_ledger(dsn: str, accounts: list[int]) -> Ledger:
    """The embedded ledger of `dsn` (migrated), open, holding `accounts` (THB, code 1)."""
    return await _fresh_ledger_at("embedded+" + dsn, accounts)


async def _fresh_ledger_at(url: str, accounts: list[int]) -> Ledger:
    """The ledger at `url`, open, holding `accounts` (THB, code 1)."""
    ledger = await open_ledger(url)
    for start in range(0, len(accounts), BATCH_MAX):
        chunk = accounts[start : start + BATCH_MAX]
        await ledger.create_accounts([tb.Account(id=i, ledger=THB, code=1) for i in chunk])
    return ledger


def goals_met(rows: list[LedgerRow]) -> bool:
    return all(row.bare.rate >= GOAL and (row.ratio is None or row.ratio >= row.writer_goal) for row in rows)


def table(rows: list[LedgerRow]) -> Table:
    """Per command size: bare transfers/s, through the writer, and the ratio, each against its goal."""
    figures = ["transfers", "bare", "writer, backlog", "writer / bare", "writer, live"]
    result = tables.table(
        "Ledger: bare embedded engine beside the ledger-writer driving it (transfers/s)",
        ["transfers per command", *figures[:2], f"goal ≥ {GOAL:,}/s", *figures[2:4]]
        + [f"goal ≥ {WRITER_GOAL:.0%}", figures[4]],
        right=figures,
        caption=(
            f"bare: full-batch create_transfers, requests of ≤ {BATCH_MAX} events; writer: the real "
            f"process with its default settings, commands in on {LEDGER_COMMANDS.name}, results out "
            f"on {LEDGER_RESULTS.name}; backlog: published while it was paused, timed from resuming "
            "to the last result; live: published while it runs, first publish to last result"
        ),
    )
    for row in rows:
        cells = [
            row.label,
            f"{row.bare.transfers:,}",
            f"{row.bare.rate:,.0f}",
            tables.verdict(row.bare.rate >= GOAL),
        ]
        if row.writer is None or row.ratio is None:
            cells += ["—", "—", "—", "—"]
        else:
            cells += [
                f"{row.writer.backlog.rate:,.0f}",
                f"{row.ratio:.1%}",
                tables.verdict(row.ratio >= row.writer_goal),
                f"{row.writer.live.rate:,.0f}",
            ]
        result.add_row(*cells)
    return result


def report(rows: list[LedgerRow], console: Console) -> bool:
    """Print the table on `console`; True when every goal was met."""
    console.print(table(rows))
    return goals_met(rows)


def _beside_bare(name: str, figure: Throughput, bare: Throughput) -> model.Benchmark:
    return model.Benchmark(
        name=name,
        unit="transfers/s",
        throughput=figure.rate,
        baseline_name="bare engine, same size",
        baseline=bare.rate,
        ratio=figure.rate / bare.rate,
    )


def section(rows: list[LedgerRow], repeat: int) -> model.Section:
    """The figures for `pm bench`'s report: per command size, the bare engine against its goal, and
    the writer (backlog and live) beside the bare engine of the same run."""
    benchmarks = []
    for row in rows:
        size = f"{row.per_command} transfer{'s' if row.per_command > 1 else ''} per command" + (
            " (linked)" if row.per_command > 1 else ""
        )
        if row.engine != "embedded":
            size += ", TigerBeetle"
        benchmarks.append(
            model.Benchmark(
                name=f"ledger, bare engine, {size}",
                unit="transfers/s",
                throughput=row.bare.rate,
                goal=f"≥ {GOAL:,}/s",
                goal_met=row.bare.rate >= GOAL,
            )
        )
        if row.writer is None:
            continue
        backlog = _beside_bare(f"ledger-writer, backlog, {size}", row.writer.backlog, row.bare)
        goal_met = backlog.ratio is not None and backlog.ratio >= row.writer_goal
        benchmarks.append(
            msgspec.structs.replace(backlog, goal=f"≥ {row.writer_goal:.0%} of bare", goal_met=goal_met)
        )
        benchmarks.append(_beside_bare(f"ledger-writer, live, {size}", row.writer.live, row.bare))
    transfers = rows[0].bare.transfers if rows else 0
    return model.Section(
        name="ledger",
        description=(
            f"The embedded ledger engine bare (full-batch create_transfers, requests of ≤ {BATCH_MAX} "
            "events), and the real ledger-writer driving it, each on an empty throw-away database. "
            "Writer, backlog: commands published while it was paused, timed from resuming to its last "
            "result (held to the goal); live: published while it runs, results read and acked as the "
            f"orchestrator would, first publish to last result. {transfers:,} transfers per figure, "
            f"best of {repeat}."
        ),
        benchmarks=benchmarks,
        goals_met=goals_met(rows),
    )
