"""Tests for pm_shared.db.pool: session settings, DSN handling, errors and the transaction helper."""

from __future__ import annotations

import secrets

import pytest

from pm_shared.db import (
    Conn,
    DatabaseUnavailableError,
    DatabaseUrlError,
    Pool,
    connect,
    create_pool,
    dsn_database,
    redact_dsn,
    transaction,
    with_database,
)


async def session_settings(conn: Conn) -> tuple[str, str]:
    search_path: str = await conn.fetchval("SHOW search_path")
    timezone: str = await conn.fetchval("SHOW timezone")
    return search_path, timezone


async def test_pool_connections_use_schema_pm_and_utc(db_pool: Pool) -> None:
    async with db_pool.acquire() as conn:
        assert await session_settings(conn) == ("pm, public", "UTC")


async def test_session_settings_survive_release_to_the_pool(database_url: str) -> None:
    # One connection, so the second acquire gets the one the pool has RESET ALL on release.
    pool = await create_pool(database_url, min_size=1, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("SET timezone = 'Asia/Kuala_Lumpur'")
            first_pid: int = await conn.fetchval("SELECT pg_backend_pid()")
        async with pool.acquire() as conn:
            second_pid: int = await conn.fetchval("SELECT pg_backend_pid()")
            settings = await session_settings(conn)
    finally:
        await pool.close()

    assert second_pid == first_pid
    assert settings == ("pm, public", "UTC")


async def test_unqualified_names_resolve_to_schema_pm(db_conn: Conn) -> None:
    table: str = await db_conn.fetchval("SELECT 'outbox'::regclass::text")

    assert table == "outbox"  # printed unqualified because pm is first on the search path
    assert await db_conn.fetchval("SELECT count(*) FROM outbox WHERE false") == 0


async def test_connect_uses_the_same_session_settings(database_url: str) -> None:
    conn = await connect(database_url)
    try:
        settings = await session_settings(conn)
    finally:
        await conn.close()

    assert settings == ("pm, public", "UTC")


async def test_postgres_scheme_is_accepted(database_url: str) -> None:
    url = "postgres://" + database_url.split("://", 1)[1]
    conn = await connect(url)
    try:
        name: str = await conn.fetchval("SELECT current_database()")
    finally:
        await conn.close()

    assert name == dsn_database(database_url)


@pytest.mark.parametrize(
    "url", ["mysql://root@localhost/pm", "postgresql+asyncpg://u@h/pm", "127.0.0.1:5432"]
)
async def test_other_schemes_are_rejected(url: str) -> None:
    with pytest.raises(DatabaseUrlError, match="must start with postgresql:// or postgres://"):
        await connect(url)


async def test_unreachable_server_raises_unavailable_without_the_password() -> None:
    with pytest.raises(DatabaseUnavailableError) as caught:
        await connect("postgresql://pm:s3cret@127.0.0.1:1/pm", connect_timeout_s=2)

    assert str(caught.value).startswith("cannot connect to postgresql://pm:***@127.0.0.1:1/pm: ")
    assert "s3cret" not in str(caught.value)
    assert isinstance(caught.value, ConnectionError)  # so callers' `except OSError` retries still work


async def test_unreachable_server_fails_create_pool_the_same_way() -> None:
    with pytest.raises(DatabaseUnavailableError, match=r"127\.0\.0\.1:1/pm"):
        await create_pool("postgresql://pm@127.0.0.1:1/pm", connect_timeout_s=2)


async def test_transaction_commits_on_success_and_rolls_back_on_error(db_pool: Pool) -> None:
    committed, rolled_back = f"test-{secrets.token_hex(8)}", f"test-{secrets.token_hex(8)}"
    insert = "INSERT INTO outbox (stream, intent_id, message_id, payload) VALUES ('s', 'i', $1, '')"

    async with transaction(db_pool) as conn:
        await conn.execute(insert, committed)
    with pytest.raises(RuntimeError, match="boom"):
        async with transaction(db_pool) as conn:
            await conn.execute(insert, rolled_back)
            raise RuntimeError("boom")

    try:
        found = await db_pool.fetch(
            "SELECT message_id FROM outbox WHERE message_id = ANY($1::text[])", [committed, rolled_back]
        )
        assert [r["message_id"] for r in found] == [committed]
    finally:
        await db_pool.execute("DELETE FROM outbox WHERE message_id = $1", committed)


def test_redact_dsn_hides_passwords() -> None:
    assert redact_dsn("postgresql://u:p%40ss@h:5432/db?sslmode=require") == (
        "postgresql://u:***@h:5432/db?sslmode=require"
    )
    assert redact_dsn("postgres://h/db?user=u&password=pw") == "postgres://h/db?user=u&password=***"
    assert redact_dsn("postgresql://u@h/db") == "postgresql://u@h/db"


def test_with_database_keeps_server_user_and_options() -> None:
    url = with_database("postgresql://u:pw@h:6543/pm?sslmode=disable&dbname=other", 'a "b"')

    assert url == "postgresql://u:pw@h:6543/a%20%22b%22?sslmode=disable"
    assert dsn_database(url) == 'a "b"'


def test_dsn_without_a_database_is_rejected() -> None:
    with pytest.raises(DatabaseUrlError, match="names no database"):
        dsn_database("postgresql://u@h:5432")
