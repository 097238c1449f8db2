"""Benchmark of the gateway's intake: signed `POST /v1/intents` beside a bare unsigned endpoint.

Both servers run as real processes, side by side, in the same run:

- the gateway: `python -m pm_gateway` with its default settings, on a throw-away database
  (migrated for the occasion, dropped afterwards) holding one service key made for the run
  (operations `P2P`, any owner), and on Redis database 14 of the given server (reserved for the
  benchmarks; only its `{pm:intents:*` and `{pm:events:*` keys are deleted, before and after);
  `PM_STREAM_MAXLEN` is large, so back-pressure is not what is measured;
- the bare endpoint: `python -m pm_tools.bench.bare_app`, the same uvicorn settings, an unsigned
  `POST /v1/intents` that decodes the same body into the same `CreateIntent`, builds the same
  `IntentSubmitted` and does the same single XADD onto `pm:intents` (no signature check, no
  database, no idempotency), answering 202.

The load comes from this process: `concurrency` asyncio workers sharing one aiohttp session of as
many keep-alive HTTP/1.1 connections post valid P2P intents, each with its own `Idempotency-Key`,
signed with `pm_client.signing.headers` for the gateway and unsigned for the bare endpoint, for
`warmup_s` then `duration_s` seconds. The rate counts the 202s completed inside the timed window;
latency is from sending the request (after its headers, and for the gateway its signature, were
made) to reading the answer. Every answer must be a 202: anything else is counted and reported as
an error, and every accepted intent must be on the stream afterwards. Each figure is the best of
`repeat` runs (goal, issue 19: the gateway at ≥ 65 % of the bare endpoint's requests/s). On a
2-core machine the load generator shares the cores with both servers, Redis and PostgreSQL; the
table shows how much of a core it used in each run. Until 2026-12-07 the generator was httpx, a
client per worker, and needed a whole core to hold the bare endpoint near 1,000 requests/s: the
generator, not the endpoint, set the bare figure, and the ratio read 50-60 %; with aiohttp the
bare endpoint reaches 2,000-3,600 requests/s here, and the ratio is the servers'.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import secrets
import time
from dataclasses import dataclass

import aiohttp
import msgspec
from redis.exceptions import ResponseError
from rich.console import Console
from rich.table import Table

from pm_client import signing
from pm_shared import db, fleet
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.runtime import tune_gc
from pm_shared.streams import connect
from pm_shared.streams.names import EVENTS, INTENTS, stream_key
from pm_shared.streams.provision import provision
from pm_tools.bench import bare_app, harness, model, tables

GOAL = 0.65
"""The gateway's requests/s as a share of the bare endpoint's."""
PATH = "/v1/intents"
STREAMS = (INTENTS, EVENTS)
STREAM_MAXLEN = 1_000_000
REQUEST_TIMEOUT_S = 30.0

BODY = msgspec.json.encode(
    {
        "type": "P2P",
        "amount": 10_000,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1001"},
        "to": {"kind": "user", "id": "u-1002"},
        "fromName": "Somchai",
        "toName": "Anna",
        "comment": "dinner",
        "requiresMonitoring": False,
        "metadata": {},
    }
)


@dataclass(frozen=True)
class Key:
    key_id: str
    secret: str


@dataclass(frozen=True)
class Side:
    """One endpoint's figures: those of its best run, with the errors of all its runs."""

    requests: int
    """202s completed inside the timed window."""
    seconds: float
    p50_ms: float
    p99_ms: float
    accepted: int
    """Every 202 of the runs, warm-up included (each one an intent that must be on the stream)."""
    errors: int
    first_error: str | None = None
    generator_cpu: float = 0.0
    """The load generator's CPU time over the wall time of the run (1.0: one core, busy throughout)."""
    p95_ms: float = math.nan

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


@dataclass(frozen=True)
class GatewayResult:
    concurrency: int
    warmup_s: float
    duration_s: float
    repeat: int
    bare: Side
    gateway: Side
    landed: int
    """Entries added to `pm:intents` during the runs; must equal the 202s of both endpoints."""

    @property
    def accepted(self) -> int:
        return self.bare.accepted + self.gateway.accepted

    @property
    def ratio(self) -> float:
        return self.gateway.rate / self.bare.rate if self.bare.rate else 0.0

    @property
    def clean(self) -> bool:
        """No errors, and every accepted intent landed on the stream."""
        return self.bare.errors == 0 and self.gateway.errors == 0 and self.landed == self.accepted


# --- the load ---------------------------------------------------------------------------------------


async def _load(
    url: str,
    key: Key | None,
    concurrency: int,
    warmup_s: float,
    duration_s: float,
) -> Side:
    """`concurrency` workers posting intents (signed with `key`, if any) for warm-up plus duration.

    The workers share one aiohttp session with up to `concurrency` keep-alive connections: the
    generator shares the machine with the endpoint, Redis and PostgreSQL, so it must cost little.
    With httpx (a client per worker) it needed a whole core to hold the bare endpoint at 1,000
    requests/s, and was what limited that rate.
    """
    latencies: list[float] = []
    accepted = errors = 0
    first_error: str | None = None
    started, cpu_started = time.perf_counter(), time.process_time()
    window_from, window_to = started + warmup_s, started + warmup_s + duration_s

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal accepted, errors, first_error
        while time.perf_counter() < window_to:
            headers = {"Content-Type": "application/json", "Idempotency-Key": secrets.token_hex(16)}
            if key is not None:
                headers.update(signing.headers(key.key_id, key.secret, "POST", PATH, BODY))
            sent = time.perf_counter()
            try:
                async with session.post(url, data=BODY, headers=headers) as response:
                    content = await response.read()
                ok = response.status == 202
                if not ok and first_error is None:
                    first_error = f"{response.status} {content[:300].decode(errors='replace')}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                ok = False
                if first_error is None:
                    first_error = repr(exc)
            done = time.perf_counter()
            if ok:
                accepted += 1
                if window_from <= done <= window_to:
                    latencies.append(done - sent)
            else:
                errors += 1

    async with _session(concurrency) as session:
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
    cpu = (time.process_time() - cpu_started) / (time.perf_counter() - started)
    p50, p95, p99, _ = harness.stats(latencies)
    return Side(
        requests=len(latencies),
        seconds=duration_s,
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        accepted=accepted,
        errors=errors,
        first_error=first_error,
        generator_cpu=cpu,
    )


def _session(connections: int) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=connections),
        cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        trust_env=False,
    )


def _best(runs: list[Side]) -> Side:
    best = max(runs, key=lambda run: run.rate)
    return dataclasses.replace(
        best,
        accepted=sum(run.accepted for run in runs),
        errors=sum(run.errors for run in runs),
        first_error=next((run.first_error for run in runs if run.first_error), None),
    )


# --- the run ------------------------------------------------------------------------------------


async def _service_key(dsn: str, cipher: Cipher) -> Key:
    conn = await db.connect(dsn)
    try:
        made, secret = await create_key(
            conn,
            cipher,
            permissions=Permissions(operations=frozenset({"P2P"}), owners=None),
            description="pm bench (gateway)",
        )
    finally:
        await conn.close()
    return Key(made.key_id, secret)


async def _both(
    variables: dict[str, str], key: Key, concurrency: int, warmup_s: float, duration_s: float, repeat: int
) -> tuple[list[Side], list[Side]]:
    """The gateway (with the fleet's `variables`) and the bare endpoint side by side: `repeat` runs of
    each, in turn."""
    maxlen = {"PM_STREAM_MAXLEN": str(STREAM_MAXLEN)}
    bare_variables = {"PM_REDIS_URL": variables["PM_REDIS_URL"], **maxlen}
    bare_runs, gateway_runs = [], []
    async with (
        harness.started(fleet.GATEWAY, {**variables, **maxlen}) as gateway,
        harness.started(bare_app.MEMBER, bare_variables) as bare,
    ):
        for _ in range(repeat):
            bare_runs.append(await _load(bare.base + PATH, None, concurrency, warmup_s, duration_s))
            gateway_runs.append(await _load(gateway.base + PATH, key, concurrency, warmup_s, duration_s))
    return bare_runs, gateway_runs


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    concurrency: int = 32,
    warmup_s: float = 1.0,
    duration_s: float = 5.0,
    repeat: int = 1,
) -> GatewayResult:
    """Bare endpoint and gateway, each the best of `repeat` runs of `warmup_s` + `duration_s`."""
    tune_gc()
    url = harness.redis_url(redis_url)
    kek = harness.key_encryption_key()
    patterns = [f"{{{spec.name}:*" for spec in STREAMS]
    async with harness.database(server_dsn, "gateway") as dsn:
        redis = connect(url, name="pm-bench-gateway")
        try:
            key = await _service_key(dsn, Cipher.from_setting(kek))
            await harness.delete_keys(redis, patterns)
            try:
                await provision(redis, 1, STREAMS)
                intents = stream_key(INTENTS.name, 0)
                before = await redis.xlen(intents)
                variables = harness.service_variables(dsn, url, "gateway", kek)
                bare_runs, gateway_runs = await _both(
                    variables, key, concurrency, warmup_s, duration_s, repeat
                )
                landed = await redis.xlen(intents) - before
            finally:
                with contextlib.suppress(ResponseError):
                    await harness.delete_keys(redis, patterns)
        finally:
            await redis.aclose()
    return GatewayResult(
        concurrency=concurrency,
        warmup_s=warmup_s,
        duration_s=duration_s,
        repeat=repeat,
        bare=_best(bare_runs),
        gateway=_best(gateway_runs),
        landed=landed,
    )


def goals_met(result: GatewayResult) -> bool:
    return result.clean and result.ratio >= GOAL


def table(result: GatewayResult) -> Table:
    """Requests/s, p50 and p99 of each endpoint, and the gateway's share of the bare rate."""
    out = tables.table(
        f"Gateway: signed POST {PATH} beside a bare unsigned endpoint doing the same XADD "
        f"({result.concurrency} concurrent requests)",
        ["endpoint", "requests/s", "p50", "p99", "timed 202s", "errors", "generator CPU", "gateway / bare"]
        + [f"goal ≥ {GOAL:.0%}"],
        right=["requests/s", "p50", "p99", "timed 202s", "errors", "generator CPU", "gateway / bare"],
        caption=(
            f"both real processes, one uvicorn worker each, same run; load: {result.concurrency} "
            f"asyncio workers sharing one aiohttp session of as many keep-alive HTTP/1.1 connections, "
            f"{result.warmup_s:g} s warm-up then {result.duration_s:g} s timed, best "
            f"of {result.repeat}; the load generator shares the machine's cores with both servers, "
            "Redis and PostgreSQL. "
            f"{result.landed:,} of {result.accepted:,} accepted intents on {INTENTS.name}."
        ),
    )
    for name, side in (("bare (unsigned, XADD only)", result.bare), ("gateway (signed)", result.gateway)):
        out.add_row(
            name,
            f"{side.rate:,.0f}",
            f"{side.p50_ms:.1f} ms",
            f"{side.p99_ms:.1f} ms",
            f"{side.requests:,}",
            f"{side.errors:,}" + (f" (first: {side.first_error})" if side.first_error else ""),
            f"{side.generator_cpu:.0%} of a core",
            "",
            "",
        )
    verdict = tables.verdict(result.ratio >= GOAL)
    if result.bare.errors or result.gateway.errors:
        verdict += ", with errors"
    if result.landed != result.accepted:
        verdict += f", {result.accepted - result.landed:,} accepted intents not on the stream"
    out.add_row("", "", "", "", "", "", "", f"{result.ratio:.1%}", verdict)
    return out


def report(result: GatewayResult, console: Console) -> bool:
    """Print the table on `console`; True when the goal was met with no errors."""
    console.print(table(result))
    return goals_met(result)


def section(result: GatewayResult) -> model.Section:
    """The figures for `pm bench`'s report: the gateway beside the bare endpoint of the same run."""
    bare, gateway = result.bare, result.gateway
    clean = "" if result.clean else "; NOT clean: errors, or accepted intents missing from the stream"
    benchmarks = [
        model.Benchmark(
            name=f"gateway, signed POST {PATH} (durable)",
            unit="requests/s",
            throughput=gateway.rate,
            p50_ms=model.finite(gateway.p50_ms),
            p95_ms=model.finite(gateway.p95_ms),
            p99_ms=model.finite(gateway.p99_ms),
            baseline_name="bare endpoint: unsigned, XADD only",
            baseline=bare.rate,
            ratio=result.ratio,
            goal=f"≥ {GOAL:.0%} of bare",
            goal_met=goals_met(result),
            note=(
                f"at {bare.generator_cpu:.0%} of a core against the bare endpoint, the load generator "
                f"is what limits that rate{clean}"
                if bare.generator_cpu >= 0.9
                else (clean.removeprefix("; ") or None)
            ),
            extra=model.known(
                {
                    "bare p50 ms": bare.p50_ms,
                    "bare p95 ms": bare.p95_ms,
                    "bare p99 ms": bare.p99_ms,
                    "generator CPU, bare (cores)": bare.generator_cpu,
                    "generator CPU, gateway (cores)": gateway.generator_cpu,
                    "errors": float(bare.errors + gateway.errors),
                    "accepted intents missing from the stream": float(result.accepted - result.landed),
                }
            ),
        )
    ]
    return model.Section(
        name="gateway",
        description=(
            f"Signed POST {PATH} through the real gateway beside a bare unsigned endpoint doing the "
            f"same XADD; {result.concurrency} concurrent keep-alive connections, {result.warmup_s:g} s "
            f"warm-up then {result.duration_s:g} s, best of {result.repeat}."
        ),
        benchmarks=benchmarks,
        goals_met=goals_met(result),
    )
