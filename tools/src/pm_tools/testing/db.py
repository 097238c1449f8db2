"""Pytest plugin: a throw-away, migrated PostgreSQL database per test session, and pools/connections on it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import pytest_asyncio

from pm_shared.db import (
    Conn,
    Pool,
    connect,
    create_pool,
    drop_database,
    ensure_database,
    migrate,
    with_database,
)

DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

T = TypeVar("T")


def server_url() -> str:
    """The server tests create databases on: PM_TEST_DATABASE_URL, else PM_DATABASE_URL, else local."""
    return os.environ.get("PM_TEST_DATABASE_URL") or os.environ.get("PM_DATABASE_URL") or DEFAULT_SERVER_URL


def new_database_url() -> str:
    """A URL for a database that does not exist yet, on the test server (`pm_test_<hex>`)."""
    return with_database(server_url(), f"pm_test_{secrets.token_hex(6)}")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` to completion from synchronous fixture or test code, whatever loop pytest-asyncio keeps."""
    return asyncio.run(coro)


async def _create_migrated(url: str) -> None:
    await ensure_database(url)
    await migrate(url)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """DSN of a database created and fully migrated for this session, dropped at its end."""
    url = new_database_url()
    run(_create_migrated(url))
    try:
        yield url
    finally:
        run(drop_database(url, force=True))


@contextlib.contextmanager
def migrated_database() -> Iterator[str]:
    """A database created and fully migrated on entry, dropped on exit: its DSN. For a module whose
    services must not meet what other tests left in the session's database (`database_url` overridden
    at module scope)."""
    url = new_database_url()
    run(_create_migrated(url))
    try:
        yield url
    finally:
        run(drop_database(url, force=True))


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """DSN of a fresh database with no schema at all (for migration tests), dropped after the test."""
    url = new_database_url()
    run(ensure_database(url))
    try:
        yield url
    finally:
        run(drop_database(url, force=True))


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """DSN of a database migrated for this test alone (nothing in it yet), dropped after the test."""
    url = new_database_url()
    run(_create_migrated(url))
    try:
        yield url
    finally:
        run(drop_database(url, force=True))


@pytest_asyncio.fixture
async def db_pool(database_url: str) -> AsyncIterator[Pool]:
    """A small pool on the session database; what tests commit through it stays for the session."""
    pool = await create_pool(database_url, min_size=1, max_size=4)
    try:
        yield pool
    finally:
        await pool.close()


@pytest_asyncio.fixture
async def db_conn(database_url: str) -> AsyncIterator[Conn]:
    """A connection inside a transaction that is rolled back after the test, so nothing it writes stays."""
    conn = await connect(database_url)
    tx = conn.transaction()
    await tx.start()
    try:
        yield conn
    finally:
        await tx.rollback()
        await conn.close()
