"""PM behind a real PgBouncer in transaction mode (`?pool_mode=transaction` on the database URL).

The test starts Debian's PgBouncer (`/usr/sbin/pgbouncer`; `apt-get install pgbouncer`, 1.18 on
bookworm) on a free loopback port in front of the test PostgreSQL, with `pool_mode = transaction` and
`default_pool_size = 4`, so every client connection of the fleet shares four server connections. Its
server connections start in another time zone than UTC (the `[databases]` entry's `timezone`): a
client whose `timezone` PgBouncer lost would see Asia/Bangkok. Without the program the tests that need
it are skipped, saying so; nothing is faked.

What is proved: PM's pools keep their session settings and never meet another session's prepared
statement; without the URL parameter PgBouncer refuses PM at login with an error that names the fix;
migrations refuse a pooled URL; and the saga (gateway, orchestrator, ledger-writer with the embedded
ledger, reconciler, webhooks as real processes) settles P2P intents with every one of its
PostgreSQL connections going through PgBouncer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from pm_shared import db
from pm_shared.streams.connection import connect as redis_connect
from pm_tools.processes import free_port
from pm_tools.testing import fixtures
from pm_tools.testing.db import migrated_database, run, server_url
from pm_tools.testing.fleet import Fleet
from pm_tools.testing.saga import (
    SagaFleet,
    check_balances,
    fund,
    names,
    new_lease_key,
    open_wallet,
    p2p,
    run_intent,
    start,
    stop,
)

PGBOUNCER = shutil.which("pgbouncer") or (
    "/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None
)
POOL_SIZE = 4
SERVER_TIMEZONE = "Asia/Bangkok"
"""What PgBouncer's server connections start with; PM asks for UTC."""
POOLED = f"?{db.POOL_MODE}=transaction"


@dataclass(frozen=True)
class Bouncer:
    port: int
    log: Path

    def url(self, database_url: str, *, pooled: bool = True) -> str:
        """`database_url` through this PgBouncer: same user and database, its port, the parameter."""
        parts = urlsplit(database_url)
        user = parts.netloc.rsplit("@", 1)[0] if "@" in parts.netloc else ""
        netloc = f"{user}@127.0.0.1:{self.port}" if user else f"127.0.0.1:{self.port}"
        url = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
        return url + POOLED if pooled else url

    def logins(self, database: str) -> int:
        """Client connections PgBouncer accepted for `database` so far (its log, `log_connections`)."""
        return self.log.read_text().count(f"login attempt: db={database} ")

    def server_connections(self, database: str) -> int:
        """Server connections PgBouncer opened for `database` so far."""
        return sum(
            1
            for line in self.log.read_text().splitlines()
            if f" {database}/" in line and "new connection to server" in line
        )


def _config(workdir: Path, port: int) -> Path:
    server = urlsplit(server_url())
    user = server.username or "postgres"
    users = workdir / "users.txt"
    users.write_text(f'"{user}" ""\n')
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={server.hostname or '127.0.0.1'} port={server.port or 5432} timezone={SERVER_TIMEZONE}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {users}\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nreserve_pool_size = 0\n"
        "max_client_conn = 500\nlogfile =\npidfile =\nlog_connections = 1\n"
    )
    return ini


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"pgbouncer exited with {proc.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"pgbouncer not listening on {port} after 10 s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def bouncer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bouncer]:
    """A PgBouncer in transaction mode of this module's, in front of the test PostgreSQL."""
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (Debian: apt-get install pgbouncer); .ci/run installs it")
    workdir = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    ini = _config(workdir, port)
    log = workdir / "pgbouncer.log"
    # It refuses to run as root; it reads its files first, then becomes `nobody`, logging to stderr.
    command = [PGBOUNCER, *(["-u", "nobody"] if os.geteuid() == 0 else []), str(ini)]
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port, proc, log)
        yield Bouncer(port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@pytest.fixture(scope="module")
def direct_url() -> Iterator[str]:
    """This module's migrated database, on PostgreSQL itself."""
    with migrated_database() as url:
        yield url


async def _backends(direct: str) -> int:
    """Sessions PostgreSQL holds on the module's database, not counting the one asking."""
    conn = await db.connect(direct)
    try:
        count = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()
    return int(count)


# -- the pool itself ---------------------------------------------------------------------------------


async def test_a_pool_keeps_its_session_settings_and_shares_four_server_connections(
    bouncer: Bouncer, direct_url: str
) -> None:
    database = db.dsn_database(direct_url)
    url = bouncer.url(direct_url)
    pool = await db.create_pool(url, min_size=16, max_size=16, application_name="pm-pgbouncer-test")
    seen: list[tuple[str, str]] = []
    try:

        async def client(n: int) -> None:
            for i in range(25):
                async with pool.acquire() as conn:
                    # The same text again and again: with asyncpg's statement cache on, the second run
                    # would look for a prepared statement on a server connection that never had it.
                    row = await conn.fetchrow(
                        "SELECT current_setting('TimeZone') AS tz,"
                        " current_setting('application_name') AS app, $1::int AS n",
                        n,
                    )
                    assert row is not None
                    seen.append((row["tz"], row["app"]))
                    async with conn.transaction():
                        await conn.execute("SELECT pg_advisory_xact_lock($1)", n)
                        assert await conn.fetchval("SELECT $1::int + $2::int", n, i) == n + i
                    await conn.executemany("SELECT $1::int", [(i,), (n,)])

        await asyncio.gather(*(client(n) for n in range(16)))
        assert await _backends(direct_url) <= POOL_SIZE
    finally:
        await pool.close()
    assert len(seen) == 16 * 25
    assert set(seen) == {("UTC", "pm-pgbouncer-test")}, set(seen)
    assert bouncer.logins(database) >= 16
    assert bouncer.server_connections(database) <= POOL_SIZE

    # A one-off connection (the CLI's, a tool's) too.
    conn = await db.connect(url)
    try:
        for _ in range(3):
            assert await conn.fetchval("SELECT current_setting('TimeZone')") == "UTC"
    finally:
        await conn.close()


async def test_without_the_parameter_pgbouncer_refuses_pm_naming_the_fix(
    bouncer: Bouncer, direct_url: str
) -> None:
    # PM's startup packet carries search_path, which PgBouncer 1.18 refuses at login.
    with pytest.raises(db.DatabaseUnavailableError, match=r"pool_mode=transaction"):
        await db.connect(bouncer.url(direct_url, pooled=False))


async def test_migrations_refuse_a_pooled_url(direct_url: str) -> None:
    # The migration lock is a session advisory lock: it would stay on whichever server connection took it.
    with pytest.raises(db.MigrationError, match="pooler"):
        await db.migrate(direct_url + POOLED)


def test_the_pool_mode_parameter_never_reaches_postgresql() -> None:
    endpoint = db.Endpoint.of(
        "postgresql://pm:secret@pgbouncer:6432/pm?sslmode=disable&pool_mode=transaction"
    )
    assert endpoint == db.Endpoint("postgresql://pm:secret@pgbouncer:6432/pm?sslmode=disable", True)
    assert endpoint.statement_cache_size(100) == 0
    assert endpoint.server_settings("pm-x", {"plan_cache_mode": "force_custom_plan"}) == {
        "timezone": "UTC",
        "application_name": "pm-x",
    }
    direct = db.Endpoint.of("postgresql://pm@postgres/pm?pool_mode=session")
    assert direct == db.Endpoint("postgresql://pm@postgres/pm", False)
    assert direct.statement_cache_size(100) == 100
    assert direct.server_settings("pm")["search_path"] == "pm, public"
    for bad in ("statement", "", "Transaction"):
        with pytest.raises(db.DatabaseUrlError, match="pool_mode"):
            db.Endpoint.of(f"postgresql://pm@pgbouncer/pm?pool_mode={bad}")
    with pytest.raises(db.DatabaseUrlError, match="once"):
        db.Endpoint.of("postgresql://pm@pgbouncer/pm?pool_mode=transaction&pool_mode=transaction")


# -- the fleet ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def saga(bouncer: Bouncer, direct_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SagaFleet]:
    """The saga's fleet (pm_tools.testing.saga) with PM_DATABASE_URL through PgBouncer, for every process."""
    fleet = Fleet(fixtures.test_redis_url(), bouncer.url(direct_url), Path(tmp_path_factory.mktemp("saga")))
    lease_key = new_lease_key()

    async def up() -> SagaFleet:
        redis = redis_connect(fixtures.test_redis_url())
        try:
            return await start(fleet, redis, lease_key)
        finally:
            await redis.aclose()

    async def down() -> None:
        redis = redis_connect(fixtures.test_redis_url())
        try:
            await stop(fleet, redis, lease_key)
        finally:
            await redis.aclose()

    try:
        yield run(up())
    finally:
        run(down())


@pytest.mark.slow
async def test_p2p_intents_settle_end_to_end_through_pgbouncer(
    saga: SagaFleet, bouncer: Bouncer, direct_url: str
) -> None:
    database = db.dsn_database(direct_url)
    assert db.Endpoint.of(saga.database_url).transaction_pooled, saga.database_url
    run_id = names("pgb")
    payers = [f"{run_id}-payer{i}" for i in range(4)]
    payees = [f"{run_id}-payee{i}" for i in range(4)]
    async with saga.client(saga.admin) as admin, saga.client(saga.user, connections=20) as user:
        for owner in payers + payees:
            await open_wallet(admin, owner)
        for payer in payers:
            await fund(admin, payer, 100_000)

        peak = 0

        async def watch(done: asyncio.Event) -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, await _backends(direct_url))
                await asyncio.sleep(0.05)

        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        try:
            # Five payments per payer, all at once: 20 intents through four server connections.
            intents = await asyncio.gather(
                *(
                    run_intent(user, p2p(payer, payee, 1_000 + k, comment=f"through pgbouncer {k}"))
                    for payer, payee in zip(payers, payees, strict=True)
                    for k in range(5)
                )
            )
        finally:
            done.set()
            await watcher
        unsettled = [(i.id, i.status, i.failure_code) for i in intents if i.status != "SETTLED"]
        assert not unsettled, (unsettled, [saga.about(i) for i, _, _ in unsettled])
        sent = sum(1_000 + k for k in range(5))
        await check_balances(
            saga,
            admin,
            {**{p: 100_000 - sent for p in payers}, **{p: sent for p in payees}},
        )
    assert peak <= POOL_SIZE, f"{peak} server connections at once; PgBouncer's pool holds {POOL_SIZE}"
    clients = bouncer.logins(database)
    assert clients > 2 * POOL_SIZE, (
        f"only {clients} client connections: the fleet did not go through PgBouncer"
    )
    assert not saga.logged("ERROR", "CRITICAL"), saga.logged("ERROR", "CRITICAL")
