"""Benchmark of the front door: end users' requests through a real nginx (`auth_request` to the Auth
Center sandbox, then the gateway) beside the same requests straight to the gateway with the headers
nginx adds, in one run at the same concurrency (goal: ≥ 80 % of the direct requests/s).

Which requests: in production only end users' requests come through nginx and the Auth Center, the
`/v1/me` routes, and each one costs nginx an auth subrequest. Signed requests (merchants, admin tools,
the Auth Center itself) are server to server, straight to the gateway or through nginx untouched (no
subrequest). So the rows held to the goal are two `/v1/me` requests: `GET /v1/me/wallets` (a read:
the user's balances from the ledger) and `POST /v1/me/payment-requests/{id}/confirm` (a write: the
request CONFIRMED, the MINIAPP_CHARGE intent written and published). A third, a signed
`GET /v1/wallets/{ownerId}` through nginx, is the proxy hop alone (no subrequest), held to it too:
the issue asked about signed requests, and it tells the hop's cost apart from the Auth Center's.

The members, real processes with their default settings: the gateway (a proxy secret made for the
run; `PM_STREAM_MAXLEN` large, so the confirmations' intents, which no orchestrator reads here, never
meet back-pressure), the ledger-writer (it opens the merchant's account when `merchant.onboard` goes
through the admin API), the Auth Center sandbox, and nginx with the front door's own configuration
(`pm_tools.frontdoor.config`). Wallets are opened and funded before they start; each user's token is
issued by the sandbox, and before each confirm phase its payment requests are inserted OPEN in bulk,
one per confirmation (all untimed).

The load (`closed`): `concurrency` workers for `warmup_s`, then `seconds` measured. Direct: the
requests carry `X-PM-User` and `X-PM-Proxy-Secret` as nginx would set them; through nginx:
`Authorization: Bearer <token>`. Requests/s: the expected answers (200, 202) that ended inside the
window; latency: those started in it, send → answer. Per row the two ways alternate which goes first,
for `rounds`; each way's figure is its best phase. The CPU each member used per answered request
(from /proc) shows where the difference goes.

Without nginx nothing is started: the result says so, and each row is reported skipped, not failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.table import Table

from pm_client.client import PMAuth
from pm_shared import db, fleet
from pm_tools import frontdoor, processes
from pm_tools.bench import closed, gateway, harness, merchant, model, services, tables

GOAL = 0.80
"""Requests/s through nginx as a share of the same requests straight to the gateway."""
WARMUP_S = 1.0
USERS = 200
CONFIRM_POOL_PER_S = 2_000
"""Payment requests made ready per second of a confirm phase, more than it can confirm on a machine
like ours (running out is reported: that phase's figures are then a lower bound)."""
NGINX_READY_S = 20.0
DIRECT, NGINX = "direct", "nginx"
MEMBERS = ("gateway", "nginx", "auth-sandbox", "postgres")
"""Whose CPU per request is shown (postgres: the backends of the run's database)."""

Operation = Callable[[httpx.AsyncClient, int], Awaitable[str | None]]
"""A request: None when it got the expected answer, else what it got."""


@dataclass(frozen=True)
class Route:
    key: str
    name: str
    expected: int


ROUTES = (
    Route("wallets", "GET /v1/me/wallets", 200),
    Route("confirm", "POST /v1/me/payment-requests/{id}/confirm", 202),
    Route("signed", "signed GET /v1/wallets/{ownerId}", 200),
)


# --- the members --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Door:
    gateway: str
    nginx: str
    auth: str
    pids: Mapping[str, int]
    """Member → pid (nginx: its master, whose workers are counted with it)."""
    database: str

    def cpu(self) -> dict[str, float | None]:
        found = {name: harness.cpu_seconds(pid, children=name == "nginx") for name, pid in self.pids.items()}
        return found | {"postgres": harness.postgres_cpu_seconds(self.database)}


def nginx_version() -> str | None:
    binary = frontdoor.installed()
    if binary is None:
        return None
    try:
        shown = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    return shown.strip().rpartition("/")[2] or None


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-2000:]


async def _nginx_ready(url: str, nginx: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + NGINX_READY_S
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        while True:
            if nginx.poll() is not None:
                raise RuntimeError(
                    f"nginx exited with {nginx.returncode}:\n{await asyncio.to_thread(_tail, log)}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url + "/healthz")).status_code == 200:
                    return
            if time.monotonic() > deadline:
                tail = await asyncio.to_thread(_tail, log)
                raise RuntimeError(f"nginx not answering after {NGINX_READY_S:g} s:\n{tail}")
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _door(stores: services.Stores, secret: str) -> AsyncIterator[Door]:
    """Ledger-writer, gateway, Auth Center sandbox, then nginx in front of them; stopped in reverse."""

    def variables(role: str) -> dict[str, str]:
        return harness.service_variables(stores.dsn, stores.redis_url, role, stores.kek)

    writer = {**variables("ledger-writer"), "PM_LEDGER_WRITER_LEASE_KEY": harness.WRITER_LEASE_KEY}
    to_gateway = {merchant.PROXY_SECRET_VARIABLE: secret, "PM_STREAM_MAXLEN": str(gateway.STREAM_MAXLEN)}
    auth_env = {"PM_AUTH_SANDBOX_SECRET": secrets.token_hex(16), "PM_LOG_LEVEL": "WARNING"}
    async with (
        harness.started(fleet.LEDGER_WRITER, writer),
        harness.started(fleet.GATEWAY, {**variables("gateway"), **to_gateway}) as gw,
        harness.started(fleet.AUTH_SANDBOX, auth_env) as auth,
    ):
        with tempfile.TemporaryDirectory(prefix="pm-bench-nginx-") as tmp:
            port = processes.free_port()
            door = frontdoor.FrontDoor(f"127.0.0.1:{port}", gw.base, auth.base, secret)
            log = Path(tmp) / "nginx.stderr"
            with log.open("wb") as err:
                nginx = frontdoor.start(door, Path(tmp) / "nginx", stderr=err.fileno())
            try:
                url = processes.base_url(port)
                await _nginx_ready(url, nginx, log)
                pids = {"gateway": gw.process.pid, "nginx": nginx.pid, "auth-sandbox": auth.process.pid}
                yield Door(gw.base, url, auth.base, pids, urlsplit(stores.dsn).path.lstrip("/"))
            finally:
                nginx.terminate()
                await asyncio.to_thread(nginx.wait, 10)


async def _tokens(auth: str, users: Sequence[str]) -> dict[str, str]:
    """A token for each user, from the Auth Center sandbox."""
    found = {}
    async with httpx.AsyncClient(base_url=auth, timeout=10, trust_env=False) as http:
        for user in users:
            made = await http.post("/tokens", json={"userId": user})
            if made.status_code != 201:
                raise RuntimeError(f"the Auth Center sandbox refused a token: {made.status_code} {made.text}")
            found[user] = str(made.json()["token"])
    return found


# --- the requests -------------------------------------------------------------------------------


def _check(response: httpx.Response, expected: int) -> str | None:
    if response.status_code == expected:
        return None
    return f"{response.status_code} {response.text[:300]}"


@dataclass(frozen=True)
class _Requests:
    users: Sequence[str]
    tokens: Mapping[str, str]
    shop: merchant.Shop
    key: PMAuth
    """A service key for the signed reads (any owner)."""
    rng: secrets.SystemRandom

    def identity(self, way: str, user: str) -> dict[str, str]:
        """What a `/v1/me` request of `user` carries: nginx's headers (direct), or the user's token."""
        if way == DIRECT:
            return merchant.as_front_door(self.shop, user)
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    def operation(self, route: Route, way: str, pool: Sequence[tuple[str, str]]) -> Operation:
        """`route`'s request, `way`; a confirmation takes the next (request id, user) of `pool`."""

        async def wallets(http: httpx.AsyncClient, n: int) -> str | None:
            user = self.rng.choice(self.users)
            return _check(await http.get("/v1/me/wallets", headers=self.identity(way, user)), route.expected)

        async def confirm(http: httpx.AsyncClient, n: int) -> str | None:
            if n >= len(pool):
                raise closed.ExhaustedError
            request_id, user = pool[n]
            path = merchant.confirm_path(request_id)
            return _check(await http.post(path, headers=self.identity(way, user)), route.expected)

        async def signed(http: httpx.AsyncClient, n: int) -> str | None:
            user = self.rng.choice(self.users)
            return _check(await http.get(f"/v1/wallets/{user}", auth=self.key), route.expected)

        found: dict[str, Operation] = {"wallets": wallets, "confirm": confirm, "signed": signed}
        return found[route.key]


# --- a phase ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One way's phase of one route."""

    way: str
    rate: float
    """Expected answers that ended inside the window, per second."""
    requests: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    errors: int
    first_error: str | None
    exhausted: bool
    generator_cpu: float
    cpu_ms: dict[str, float]
    """Member → its CPU ms per expected answer over the phase (warm-up included); a member missing
    when /proc could not tell."""

    @property
    def clean(self) -> bool:
        return self.errors == 0 and self.requests > 0


def _answered(record: closed.Timed[str | None]) -> bool:
    return record.error is None and record.value is None


async def _phase(
    door: Door, requests: _Requests, conn: db.Conn, route: Route, way: str, size: tuple[int, float, float]
) -> Side:
    concurrency, warmup_s, seconds = size
    pool: list[tuple[str, str]] = []
    if route.key == "confirm":
        users = [
            requests.rng.choice(requests.users)
            for _ in range(math.ceil(CONFIRM_POOL_PER_S * (warmup_s + seconds)))
        ]
        pool = list(zip(await merchant.open_requests(conn, requests.shop, users), users, strict=True))
    before = door.cpu()
    base = door.gateway if way == DIRECT else door.nginx
    loop = await closed.run(base, concurrency, warmup_s, seconds, requests.operation(route, way, pool))
    after = door.cpu()
    cpu_ms = harness.cpu_delta_ms(before, after, sum(1 for r in loop.records if _answered(r)))
    timed = [r.ended - r.started for r in loop.started_in_window() if _answered(r)]
    p50, p95, p99, _ = harness.stats(timed)
    errors = [r.error or r.value for r in loop.records if not _answered(r)]
    return Side(
        way=way,
        rate=loop.rate(_answered),
        requests=len(loop.in_window(_answered)),
        p50_ms=p50,
        p95_ms=p95,
        p99_ms=p99,
        errors=len(errors),
        first_error=closed.first_error(errors),
        exhausted=loop.exhausted,
        generator_cpu=loop.generator_cpu,
        cpu_ms=cpu_ms,
    )


# --- the run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteResult:
    route: Route
    direct: list[Side]
    nginx: list[Side]

    @property
    def best_direct(self) -> Side:
        return max(self.direct, key=lambda side: side.rate)

    @property
    def best_nginx(self) -> Side:
        return max(self.nginx, key=lambda side: side.rate)

    @property
    def ratio(self) -> float:
        direct = self.best_direct.rate
        return self.best_nginx.rate / direct if direct else 0.0

    @property
    def clean(self) -> bool:
        return all(side.clean for side in (*self.direct, *self.nginx))

    @property
    def met(self) -> bool:
        return self.clean and self.ratio >= GOAL

    @property
    def cpu_bound_ratio(self) -> float | None:
        """nginx ÷ direct as the CPU per request predicts it (best phases; `harness.cpu_bound_ratio`)."""
        return harness.cpu_bound_ratio(self.best_direct.cpu_ms, self.best_nginx.cpu_ms)


@dataclass(frozen=True)
class FrontDoorResult:
    concurrency: int
    warmup_s: float
    seconds: float
    users: int
    routes: list[RouteResult]
    skipped: str | None = None
    """Why nothing was measured (no nginx on this machine): not a failure."""
    nginx: str | None = None
    """nginx's version."""


async def run(
    server_dsn: str,
    redis_url: str,
    *,
    concurrency: int = 32,
    seconds: float = 5.0,
    rounds: int = 3,
    warmup_s: float = WARMUP_S,
    users: int = USERS,
) -> FrontDoorResult:
    """Each route of `ROUTES`, both ways, `rounds` times; or, without nginx, nothing (`skipped`)."""
    size = (concurrency, warmup_s, seconds)
    if frontdoor.installed() is None:
        skipped = f"nginx is not installed: {frontdoor.INSTALL_HINT}"
        return FrontDoorResult(concurrency, warmup_s, seconds, users, [], skipped=skipped)
    secret = merchant.proxy_secret()
    sides: dict[tuple[str, str], list[Side]] = {(r.key, w): [] for r in ROUTES for w in (DIRECT, NGINX)}
    async with (
        services.stores(server_dsn, redis_url, "frontdoor", users=users) as stores,
        _door(stores, secret) as door,
    ):
        shop = await merchant.onboard(door.gateway, await merchant.admin_key(stores.dsn, stores.kek), secret)
        tokens = await _tokens(door.auth, stores.users)
        requests = _Requests(stores.users, tokens, shop, PMAuth(*stores.key), secrets.SystemRandom())
        conn = await db.connect(stores.dsn, application_name="pm-bench-frontdoor")
        try:
            for n in range(rounds):
                for route in ROUTES:
                    for way in (DIRECT, NGINX) if n % 2 == 0 else (NGINX, DIRECT):
                        side = await _phase(door, requests, conn, route, way, size)
                        sides[route.key, way].append(side)
        finally:
            await conn.close()
    found = [RouteResult(r, sides[r.key, DIRECT], sides[r.key, NGINX]) for r in ROUTES]
    return FrontDoorResult(concurrency, warmup_s, seconds, users, found, nginx=nginx_version())


def goals_met(result: FrontDoorResult) -> bool | None:
    """None when skipped (not held); else every route clean and through nginx at the goal."""
    if result.skipped is not None:
        return None
    return all(route.met for route in result.routes)


# --- the report ---------------------------------------------------------------------------------

DIRECT_BASELINE = "the same requests straight to the gateway, with the headers nginx adds"
SIGNED_BASELINE = "the same signed requests straight to the gateway"


def _cpu(side: Side, found: RouteResult) -> str:
    shown = ", ".join(f"{name} {side.cpu_ms[name]:.2f}" for name in MEMBERS if name in side.cpu_ms)
    bound = found.cpu_bound_ratio
    if side is found.best_nginx and bound is not None:
        shown += f" ({bound:.0%} of direct as the CPU predicts it)"
    return shown or "—"


def _problems(side: Side) -> str:
    parts = [f"errors {side.errors:,} (first: {side.first_error})"] if side.errors else []
    parts += ["ran out of payment requests (a lower bound)"] if side.exhausted else []
    return ", ".join(parts) or "none"


def _nginx(result: FrontDoorResult) -> str:
    if result.skipped is not None:
        return "no nginx"
    return f"nginx {result.nginx}" if result.nginx else "nginx"


def _caption(result: FrontDoorResult) -> str:
    if result.skipped is not None:
        return f"SKIPPED: {result.skipped}. Nothing was measured; this is not a failure."
    return (
        "members: gateway, ledger-writer, Auth Center sandbox and nginx (the front door's own "
        "configuration) as real processes. Direct: X-PM-User and X-PM-Proxy-Secret as nginx sets "
        "them; through nginx: Authorization: Bearer <token> (each /v1/me request one auth "
        f"subrequest). Closed loop, {result.warmup_s:g} s warm-up then {result.seconds:g} s "
        "measured per phase, the two ways alternating; the best phase of each. CPU ms per "
        "request: each member's CPU over the phase's answered requests (from /proc; postgres: the "
        "run's backends)."
    )


def table(result: FrontDoorResult) -> Table:
    """Per route, each way's best phase, and nginx's share of the direct rate against the goal."""
    figures = ["requests/s", "p50", "p99", "generator CPU", "nginx ÷ direct"]
    out = tables.table(
        f"Front door: requests through nginx (auth_request → Auth Center sandbox → gateway) beside "
        f"straight to the gateway ({result.concurrency} concurrent, {_nginx(result)})",
        ["route", "way", *figures, f"goal ≥ {GOAL:.0%}", "CPU ms per request", "errors"],
        right=figures,
        caption=_caption(result),
    )
    if result.skipped:
        for route in ROUTES:
            out.add_row(route.name, "", "", "", "", "", "", f"SKIPPED: {result.skipped}", "", "")
        return out
    for found in result.routes:
        for side in (found.best_direct, found.best_nginx):
            last = side is found.best_nginx
            verdict = tables.verdict(found.met) + ("" if found.clean else " (errors)")
            out.add_row(
                found.route.name if not last else "",
                side.way,
                f"{side.rate:,.0f}",
                f"{side.p50_ms:,.1f} ms",
                f"{side.p99_ms:,.1f} ms",
                f"{side.generator_cpu:.0%} of a core",
                f"{found.ratio:.1%}" if last else "",
                verdict if last else "",
                _cpu(side, found),
                _problems(side),
                end_section=last,
            )
    return out


def report(result: FrontDoorResult, console: Console) -> bool | None:
    console.print(table(result))
    return goals_met(result)


def _benchmark(found: RouteResult) -> model.Benchmark:
    direct, nginx = found.best_direct, found.best_nginx
    signed = found.route.key == "signed"
    bound = found.cpu_bound_ratio
    extra: dict[str, float | None] = {
        "direct p50 ms": direct.p50_ms,
        "direct p99 ms": direct.p99_ms,
        "ratio the CPU per request predicts (%)": None if bound is None else bound * 100,
        **{
            f"{way} round {n} requests/s": s.rate
            for way, sides in (("direct", found.direct), ("nginx", found.nginx))
            for n, s in enumerate(sides, 1)
        },
        **{f"CPU ms per request, {name}, direct": direct.cpu_ms.get(name) for name in MEMBERS},
        **{f"CPU ms per request, {name}, nginx": nginx.cpu_ms.get(name) for name in MEMBERS},
        "generator CPU, direct (cores)": direct.generator_cpu,
        "generator CPU, nginx (cores)": nginx.generator_cpu,
    }
    problems = [
        f"{side.way}: {_problems(side)}"
        for side in (*found.direct, *found.nginx)
        if _problems(side) != "none"
    ]
    return model.Benchmark(
        name=f"front door: {found.route.name} through nginx" + ("" if signed else " (auth_request)"),
        unit="requests/s",
        throughput=nginx.rate,
        p50_ms=model.finite(nginx.p50_ms),
        p95_ms=model.finite(nginx.p95_ms),
        p99_ms=model.finite(nginx.p99_ms),
        baseline_name=SIGNED_BASELINE if signed else DIRECT_BASELINE,
        baseline=direct.rate,
        ratio=found.ratio,
        goal=f"≥ {GOAL:.0%} of direct",
        goal_met=found.met,
        note="; ".join(problems) or None,
        extra=model.known(extra),
    )


def section(result: FrontDoorResult) -> model.Section:
    """The figures for `pm bench`'s report: each route through nginx beside direct; skipped rows
    (marked so, held to nothing) when nginx is not installed."""
    if result.skipped is not None:
        benchmarks = [
            model.Benchmark(
                name=f"front door: {route.name} through nginx",
                unit="requests/s",
                throughput=None,
                goal=f"≥ {GOAL:.0%} of direct",
                skipped=result.skipped,
            )
            for route in ROUTES
        ]
    else:
        benchmarks = [_benchmark(found) for found in result.routes]
    return model.Section(
        name="front door",
        description=(
            "End users' requests through a real nginx (auth_request to the Auth Center sandbox, then the "
            "gateway) beside the same requests straight to the gateway with the headers nginx adds, "
            f"and a signed read both ways; closed loop, {result.concurrency} concurrent, "
            f"{result.warmup_s:g} s warm-up then {result.seconds:g} s per phase, the best phase of each "
            f"way; {_nginx(result)}."
        ),
        benchmarks=benchmarks,
        goals_met=goals_met(result),
    )
