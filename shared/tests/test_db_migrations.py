"""Tests for pm_shared.db.migrations and `pm migrate`, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import typer
from typer.testing import CliRunner

from pm_shared.db import (
    Conn,
    MigrationError,
    connect,
    drop_database,
    dsn_database,
    ensure_database,
    load_migrations,
    migrate,
    packaged_migrations,
    status,
    with_database,
)
from pm_tools.cli import migrate_cmd
from pm_tools.testing.db import new_database_url, run, server_url

CREATE_A = "CREATE TABLE pm.a (id int PRIMARY KEY);\n"
CREATE_B = "CREATE TABLE pm.b (id int PRIMARY KEY REFERENCES pm.a (id));\n"
CREATE_C = "ALTER TABLE pm.b ADD COLUMN note text;\n"


def write_migrations(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


@pytest.fixture
def three(tmp_path: Path) -> Path:
    """Three migrations where each depends on the one before, so order matters."""
    return write_migrations(
        tmp_path / "migrations",
        {"0001_a.sql": CREATE_A, "0002_b.sql": CREATE_B, "0003_b_note.sql": CREATE_C},
    )


async def ledger(url: str) -> list[tuple[int, str, str]]:
    conn = await connect(url)
    try:
        rows = await conn.fetch("SELECT version, name, checksum FROM pm.schema_migration ORDER BY version")
    finally:
        await conn.close()
    return [(r["version"], r["name"], r["checksum"]) for r in rows]


async def table_exists(url: str, name: str) -> bool:
    conn = await connect(url)
    try:
        exists: bool = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
    finally:
        await conn.close()
    return exists


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


async def test_migrations_apply_in_order_and_record_checksums(empty_database_url: str, three: Path) -> None:
    applied = await migrate(empty_database_url, source=three)

    assert [m.version for m in applied] == [1, 2, 3]
    assert await ledger(empty_database_url) == [
        (1, "a", sha256(three / "0001_a.sql")),
        (2, "b", sha256(three / "0002_b.sql")),
        (3, "b_note", sha256(three / "0003_b_note.sql")),
    ]
    assert [m.checksum for m in applied] == [row[2] for row in await ledger(empty_database_url)]


async def test_second_migrate_applies_nothing(empty_database_url: str, three: Path) -> None:
    first = await migrate(empty_database_url, source=three)
    second = await migrate(empty_database_url, source=three)

    assert len(first) == 3
    assert second == []
    assert len(await ledger(empty_database_url)) == 3


async def test_new_file_is_applied_on_the_next_run(empty_database_url: str, three: Path) -> None:
    await migrate(empty_database_url, source=three)
    write_migrations(three, {"0004_c.sql": "CREATE TABLE pm.c (id int);\n"})

    applied = await migrate(empty_database_url, source=three)

    assert [m.label for m in applied] == ["0004_c"]
    assert await table_exists(empty_database_url, "pm.c")


async def test_concurrent_migrates_apply_each_migration_once(empty_database_url: str, tmp_path: Path) -> None:
    # The sleep holds the first run inside migration 0001, so without the lock the second run
    # would read an empty ledger and apply 0001 again (failing on "relation already exists").
    source = write_migrations(
        tmp_path,
        {
            "0001_a.sql": CREATE_A + "SELECT pg_sleep(0.5);\n",
            "0002_b.sql": CREATE_B,
        },
    )

    results = await asyncio.gather(
        migrate(empty_database_url, source=source),
        migrate(empty_database_url, source=source),
        migrate(empty_database_url, source=source),
    )

    assert sorted(m.version for result in results for m in result) == [1, 2]
    assert sorted(len(result) for result in results) == [0, 0, 2]
    assert [row[0] for row in await ledger(empty_database_url)] == [1, 2]


async def test_changed_checksum_raises_and_applies_nothing(empty_database_url: str, three: Path) -> None:
    await migrate(empty_database_url, source=three, target=1)
    (three / "0001_a.sql").write_text(CREATE_A + "-- edited after it was applied\n", encoding="utf-8")

    with pytest.raises(MigrationError, match=r"0001_a changed after it was applied"):
        await migrate(empty_database_url, source=three)

    assert [row[0] for row in await ledger(empty_database_url)] == [1]
    assert not await table_exists(empty_database_url, "pm.b")


async def test_applied_migration_unknown_to_the_code_raises(empty_database_url: str, three: Path) -> None:
    await migrate(empty_database_url, source=three)
    (three / "0003_b_note.sql").unlink()

    with pytest.raises(MigrationError, match=r"0003_b_note applied, which this code does not know"):
        await migrate(empty_database_url, source=three)


@pytest.mark.parametrize(
    "bad_name",
    ["1_a.sql", "0001-a.sql", "0001_A.sql", "0001_a.SQL", "0001_a.sql.orig", "00001_a.sql", "a.sql"],
)
def test_bad_file_name_raises(tmp_path: Path, bad_name: str) -> None:
    source = write_migrations(tmp_path, {bad_name: CREATE_A})

    with pytest.raises(MigrationError, match="bad migration file name") as caught:
        load_migrations(source)
    assert bad_name in str(caught.value)


def test_other_files_are_ignored(tmp_path: Path) -> None:
    source = write_migrations(tmp_path, {"0001_a.sql": CREATE_A, "README.md": "notes"})

    assert [m.label for m in load_migrations(source)] == ["0001_a"]


def test_gap_in_versions_raises(tmp_path: Path) -> None:
    source = write_migrations(tmp_path, {"0001_a.sql": CREATE_A, "0003_c.sql": CREATE_C})

    with pytest.raises(MigrationError, match=r"expected 0002, found 0003_c\.sql"):
        load_migrations(source)


def test_versions_must_start_at_one(tmp_path: Path) -> None:
    source = write_migrations(tmp_path, {"0002_b.sql": CREATE_B})

    with pytest.raises(MigrationError, match=r"expected 0001, found 0002_b\.sql"):
        load_migrations(source)


def test_duplicate_version_raises(tmp_path: Path) -> None:
    source = write_migrations(tmp_path, {"0001_a.sql": CREATE_A, "0001_b.sql": CREATE_B})

    with pytest.raises(MigrationError, match="duplicate migration version 0001"):
        load_migrations(source)


async def test_bad_files_are_rejected_before_touching_the_database(
    empty_database_url: str, tmp_path: Path
) -> None:
    source = write_migrations(tmp_path, {"0001_a.sql": CREATE_A, "0003_c.sql": CREATE_C})

    with pytest.raises(MigrationError):
        await migrate(empty_database_url, source=source)

    assert not await table_exists(empty_database_url, "pm.schema_migration")


async def test_failing_migration_is_rolled_back_and_not_recorded(
    empty_database_url: str, tmp_path: Path
) -> None:
    source = write_migrations(
        tmp_path,
        {"0001_a.sql": CREATE_A, "0002_bad.sql": "CREATE TABLE pm.half (id int);\nSELECT no_such_column;\n"},
    )

    with pytest.raises(MigrationError, match=r"0002_bad failed and was rolled back"):
        await migrate(empty_database_url, source=source)

    assert [row[0] for row in await ledger(empty_database_url)] == [1]
    assert not await table_exists(empty_database_url, "pm.half")


async def test_target_stops_at_that_version(empty_database_url: str, three: Path) -> None:
    applied = await migrate(empty_database_url, source=three, target=2)

    assert [m.version for m in applied] == [1, 2]
    assert [m.version for m in await migrate(empty_database_url, source=three)] == [3]


async def test_target_below_applied_version_raises(empty_database_url: str, three: Path) -> None:
    await migrate(empty_database_url, source=three)

    with pytest.raises(MigrationError, match="only go forward"):
        await migrate(empty_database_url, source=three, target=1)


async def test_unknown_target_raises(empty_database_url: str, three: Path) -> None:
    with pytest.raises(MigrationError, match="target 9 is not a known migration version"):
        await migrate(empty_database_url, source=three, target=9)


async def test_status_lists_applied_and_pending(empty_database_url: str, three: Path) -> None:
    before = await status(empty_database_url, source=three)
    await migrate(empty_database_url, source=three, target=1)
    after = await status(empty_database_url, source=three)

    assert (before.applied, [m.version for m in before.pending]) == ([], [1, 2, 3])
    assert [m.version for m in after.applied] == [1]
    assert [m.version for m in after.pending] == [2, 3]
    assert after.problems == []


async def test_status_reports_changed_checksum(empty_database_url: str, three: Path) -> None:
    await migrate(empty_database_url, source=three)
    (three / "0002_b.sql").write_text(CREATE_B + "-- edited\n", encoding="utf-8")

    result = await status(empty_database_url, source=three)

    assert len(result.problems) == 1
    assert "0002_b changed" in result.problems[0]


async def test_status_of_missing_database_is_all_pending(three: Path) -> None:
    result = await status(new_database_url(), source=three)

    assert [m.version for m in result.pending] == [1, 2, 3]


def test_packaged_migrations_are_valid() -> None:
    migrations = load_migrations()

    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].label == "0001_pm_schema"
    packaged = packaged_migrations().joinpath("0001_pm_schema.sql").read_bytes()
    assert migrations[0].checksum == hashlib.sha256(packaged).hexdigest()


async def test_session_database_has_every_packaged_migration(database_url: str) -> None:
    rows = await ledger(database_url)

    assert [(v, n, c) for v, n, c in rows] == [(m.version, m.name, m.checksum) for m in load_migrations()]


async def test_outbox_table_matches_the_design(db_conn: Conn) -> None:
    columns = await db_conn.fetch(
        """
        SELECT column_name, data_type, is_nullable, is_identity, column_default
        FROM information_schema.columns
        WHERE table_schema = 'pm' AND table_name = 'outbox'
        ORDER BY ordinal_position
        """
    )
    shape = {r["column_name"]: (r["data_type"], r["is_nullable"]) for r in columns}
    index: str = await db_conn.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pm' AND indexname = 'outbox_unpublished_idx'"
    )

    assert shape == {
        "id": ("bigint", "NO"),
        "stream": ("text", "NO"),
        "intent_id": ("text", "NO"),
        "message_id": ("text", "NO"),
        "payload": ("bytea", "NO"),
        "created_at": ("timestamp with time zone", "NO"),
        "published_at": ("timestamp with time zone", "YES"),
        "attempts": ("integer", "NO"),
        "last_error": ("text", "YES"),
    }
    assert [r["is_identity"] for r in columns if r["column_name"] == "id"] == ["YES"]
    assert index.endswith("USING btree (id) WHERE (published_at IS NULL)")


async def test_outbox_rejects_a_duplicate_message_id(db_conn: Conn) -> None:
    insert = (
        "INSERT INTO outbox (stream, intent_id, message_id, payload) VALUES ($1, $2, $3, $4) RETURNING id"
    )
    first: int = await db_conn.fetchval(insert, "pm:ledger:commands", "i1", "m1", b"\x01")

    # A savepoint, so the expected error does not abort the fixture's transaction.
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db_conn.transaction():
            await db_conn.execute(insert, "pm:ledger:commands", "i1", "m1", b"\x02")

    row = await db_conn.fetchrow("SELECT published_at, attempts FROM outbox WHERE id = $1", first)
    assert row is not None
    assert (row["published_at"], row["attempts"]) == (None, 0)


async def test_ensure_database_creates_a_missing_database_and_is_idempotent() -> None:
    # Upper case, a space and a double quote: the name must reach PostgreSQL exactly as given.
    url = with_database(server_url(), f'pm_test_Odd "name" {new_database_url()[-12:]}')
    try:
        created = await ensure_database(url)
        again = await ensure_database(url)
        conn = await connect(url)
        try:
            current: str = await conn.fetchval("SELECT current_database()")
        finally:
            await conn.close()
    finally:
        await drop_database(url)

    assert (created, again) == (True, False)
    assert current == dsn_database(url)


async def test_drop_database_removes_it() -> None:
    url = new_database_url()
    await ensure_database(url)

    await drop_database(url)

    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await connect(url)


def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("migrate")(migrate_cmd.migrate)
    return app


@pytest.fixture
def missing_database_url() -> Iterator[str]:
    """A database name nobody created yet; dropped after the test in case the test created it."""
    url = new_database_url()
    yield url
    run(drop_database(url))


def test_cli_creates_and_migrates_a_fresh_database(missing_database_url: str) -> None:
    runner = CliRunner()

    first = runner.invoke(cli(), ["--database-url", missing_database_url])
    second = runner.invoke(cli(), ["--database-url", missing_database_url])

    assert first.exit_code == 0, first.output
    assert f"created database {dsn_database(missing_database_url)}" in first.stdout
    assert "0001" in first.stdout
    assert "pm_schema" in first.stdout
    assert second.exit_code == 0, second.output
    assert "schema up to date" in second.stdout
    assert [row[0] for row in run(ledger(missing_database_url))] == [m.version for m in load_migrations()]


def test_cli_reads_the_url_from_the_environment(missing_database_url: str) -> None:
    result = CliRunner().invoke(cli(), [], env={"PM_DATABASE_URL": missing_database_url})

    assert result.exit_code == 0, result.output
    assert run(table_exists(missing_database_url, "pm.outbox"))


def test_cli_status_shows_pending_then_applied(missing_database_url: str) -> None:
    runner = CliRunner()

    before = runner.invoke(cli(), ["--database-url", missing_database_url, "--status"])
    runner.invoke(cli(), ["--database-url", missing_database_url])
    after = runner.invoke(cli(), ["--database-url", missing_database_url, "--status"])

    assert before.exit_code == 0, before.output
    assert "pending" in before.stdout
    assert "applied" not in before.stdout
    assert after.exit_code == 0, after.output
    assert "applied" in after.stdout
    assert "pending" not in after.stdout


def test_cli_changed_checksum_exits_1(missing_database_url: str) -> None:
    runner = CliRunner()
    runner.invoke(cli(), ["--database-url", missing_database_url])

    async def tamper() -> None:
        conn = await connect(missing_database_url)
        try:
            await conn.execute("UPDATE pm.schema_migration SET checksum = 'x' WHERE version = 1")
        finally:
            await conn.close()

    run(tamper())
    result = runner.invoke(cli(), ["--database-url", missing_database_url])

    assert result.exit_code == 1
    assert "0001_pm_schema changed after it was applied" in result.stderr


def test_cli_unreachable_database_exits_2_and_hides_the_password() -> None:
    # Port 1 on loopback refuses at once; nothing listens there.
    url = "postgresql://pm:s3cret@127.0.0.1:1/pm"

    result = CliRunner().invoke(cli(), ["--database-url", url])

    assert result.exit_code == 2
    assert "cannot connect to postgresql://pm:***@127.0.0.1:1/pm" in result.stderr
    assert "s3cret" not in result.output


def test_cli_rejects_a_non_postgres_url() -> None:
    result = CliRunner().invoke(cli(), ["--database-url", "mysql://root@127.0.0.1/pm"])

    assert result.exit_code == 1
    assert "must start with postgresql:// or postgres://" in result.stderr
