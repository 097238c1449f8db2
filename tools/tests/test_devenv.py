"""Tests for pm_tools.devenv and `pm dev`: real servers, real private instances, fake system programs."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from typer.testing import CliRunner, Result

from pm_tools import devenv
from pm_tools.cli import dev_cmd
from pm_tools.processes import free_port

# `make test` exports the servers `pm dev ensure` found; alone, the defaults.
GOOD_REDIS_URL = os.environ.get("PM_REDIS_URL") or "redis://127.0.0.1:6379/0"
GOOD_DATABASE_URL = os.environ.get("PM_DATABASE_URL") or "postgresql://postgres@127.0.0.1:5432/pm"


@pytest.fixture
def home() -> Iterator[Path]:
    # Not tmp_path: pytest makes it private to root, and a private PostgreSQL runs as another user.
    top = Path(tempfile.mkdtemp(prefix="pm-devenv-"))
    top.chmod(0o755)
    try:
        yield top / ".pm"
    finally:
        asyncio.run(devenv.stop_private(top / ".pm"))
        shutil.rmtree(top, ignore_errors=True)


def isolated(home: Path, **changes: Any) -> devenv.Search:
    """A search where only private instances can work: nothing listens on its ports, no system server."""
    search = devenv.Search(
        home=home,
        path=os.environ.get("PATH", os.defpath),
        redis_port=free_port(),
        postgres_port=free_port(),
        redis_system_markers=(),
        postgres_etc=home.parent / "no-etc-postgresql",
        timeout=30.0,
    )
    return dataclasses.replace(search, **changes)


def empty_bin(home: Path) -> str:
    folder = home.parent / "empty-bin"
    folder.mkdir(exist_ok=True)
    return str(folder)


async def redis_answers(url: str) -> bool:
    client = aioredis.Redis.from_url(url, socket_connect_timeout=2)
    try:
        return bool(await client.ping())
    finally:
        await client.aclose()


async def test_env_urls_are_used_as_given(home: Path) -> None:
    # A database that does not exist yet still counts: `ensure_database` creates it.
    database_url = devenv._with_database(GOOD_DATABASE_URL, "pm_devenv_not_created_yet")
    environ = {"PM_REDIS_URL": GOOD_REDIS_URL, "PM_DATABASE_URL": database_url}
    search = isolated(home, path=empty_bin(home), postgres_bin_globs=())

    env = await devenv.ensure(search, environ)

    assert (env.redis_url, env.redis_strategy) == (GOOD_REDIS_URL, devenv.Strategy.ENV)
    assert (env.database_url, env.database_strategy) == (database_url, devenv.Strategy.ENV)
    assert env.env() == {"PM_REDIS_URL": GOOD_REDIS_URL, "PM_DATABASE_URL": database_url}
    assert await env.stop() == []


@pytest.mark.parametrize("variable", ["PM_REDIS_URL", "PM_DATABASE_URL"])
async def test_env_url_that_does_not_answer_is_an_error_not_a_fallback(home: Path, variable: str) -> None:
    port = free_port()
    bad = {
        "PM_REDIS_URL": f"redis://:hunter2@127.0.0.1:{port}/0",
        "PM_DATABASE_URL": f"postgresql://postgres:hunter2@127.0.0.1:{port}/pm",
    }[variable]
    environ = {"PM_REDIS_URL": GOOD_REDIS_URL, "PM_DATABASE_URL": GOOD_DATABASE_URL, variable: bad}

    with pytest.raises(devenv.DevEnvError) as caught:
        # The real PATH: a private instance could be started, and must not be.
        await devenv.ensure(isolated(home), environ)

    message = str(caught.value)
    assert f"{variable}=" in message
    assert f"127.0.0.1:{port}" in message
    assert "does not answer" in message
    assert f"unset {variable}" in message
    assert "hunter2" not in message
    assert not (home / "redis").exists()
    assert not (home / "pg").exists()


async def test_servers_on_the_default_ports_are_found(home: Path) -> None:
    for port in (6379, 5432):
        if not await devenv.port_open("127.0.0.1", port):
            pytest.skip(f"nothing listens on 127.0.0.1:{port}")
    search = devenv.Search(home=home, path=empty_bin(home), postgres_bin_globs=(), redis_system_markers=())

    env = await devenv.ensure(search, {})

    assert (env.redis_url, env.redis_strategy) == ("redis://127.0.0.1:6379/0", devenv.Strategy.LOCAL)
    assert env.database_strategy is devenv.Strategy.LOCAL
    assert env.database_url.endswith("@127.0.0.1:5432/pm")
    assert not env.redis.started and not env.postgres.started
    assert await env.stop() == []


async def test_private_redis_is_started_reused_and_stopped(home: Path) -> None:
    search = isolated(home)

    first = await devenv.find_redis(search, {})

    assert first.strategy is devenv.Strategy.PRIVATE
    assert first.started and first.stop is not None
    port = int(first.url.rsplit(":", 1)[1].split("/")[0])
    assert port != search.redis_port
    assert await redis_answers(first.url)
    pid = int((home / "redis" / "redis.pid").read_text())
    assert devenv._pid_alive(pid)

    again = await devenv.find_redis(search, {})
    assert (again.url, again.started, again.stop) == (first.url, False, None)

    await first.stop()
    assert not devenv._pid_alive(pid)
    assert not await devenv.port_open("127.0.0.1", port)
    assert await devenv.stop_private(home) == []


@pytest.mark.slow
async def test_private_postgres_runs_unprivileged_and_stops(home: Path) -> None:
    search = isolated(home)

    found = await asyncio.wait_for(devenv.find_postgres(search, {}), 30)

    assert found.strategy is devenv.Strategy.PRIVATE and found.started and found.stop is not None
    assert found.url.startswith("postgresql://postgres@127.0.0.1:") and found.url.endswith("/pm")
    data = home / "pg" / "data"
    if os.geteuid() == 0:
        assert data.stat().st_uid != 0
    conn = await asyncpg.connect(devenv._with_database(found.url, "postgres"))
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS who, current_setting('listen_addresses') AS listen, "
            "current_setting('unix_socket_directories') AS sockets"
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["who"], row["listen"]) == ("postgres", "127.0.0.1")
    assert row["sockets"] == str(home / "pg" / "sock")

    again = await devenv.find_postgres(search, {})
    assert (again.url, again.started, again.stop) == (found.url, False, None)

    await found.stop()
    assert devenv.PrivatePostgres(home / "pg").running_port() is None
    assert not (data / "postmaster.pid").exists()


def fake_program(folder: Path, name: str, log: Path) -> None:
    """A program that records its arguments (one JSON list a line) and succeeds without starting anything."""
    path = folder / name
    path.write_text(
        f"#!/bin/sh\nexec python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' \"$@\" >> {log}\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


async def test_stopped_system_servers_are_started_with_the_packaged_commands(home: Path) -> None:
    folder = home.parent / "fake-bin"
    folder.mkdir()
    redis_log, pg_log = home.parent / "redis-server.log", home.parent / "pg_ctlcluster.log"
    fake_program(folder, "redis-server", redis_log)
    fake_program(folder, "pg_ctlcluster", pg_log)
    etc = home.parent / "etc-postgresql"
    (etc / "13" / "main").mkdir(parents=True)
    (etc / "15" / "main").mkdir(parents=True)
    marker = home.parent / "redis.conf"
    marker.touch()
    search = isolated(
        home,
        path=str(folder),
        postgres_bin_globs=(),
        postgres_etc=etc,
        redis_system_markers=(marker,),
        timeout=1.0,
    )

    # The fakes start nothing, so after the system commands come the private attempt and the error.
    with pytest.raises(devenv.DevEnvError) as caught:
        await devenv.ensure(search, {})

    redis_calls = [json.loads(line) for line in redis_log.read_text().splitlines()]
    assert redis_calls[0] == [
        "--daemonize", "yes", "--bind", "127.0.0.1", "--port", str(search.redis_port),
        "--save", "", "--appendonly", "no",
    ]  # fmt: skip
    pg_calls = [json.loads(line) for line in pg_log.read_text().splitlines()]
    assert pg_calls == [["--skip-systemctl-redirect", "15", "main", "start"]]
    assert "started cluster 15/main, but" in str(caught.value)


async def test_nothing_installed_says_what_to_install(home: Path) -> None:
    search = isolated(home, path=empty_bin(home), postgres_bin_globs=())

    with pytest.raises(devenv.DevEnvError) as caught:
        await devenv.ensure(search, {})

    message = str(caught.value)
    for needle in (
        "install Redis 7",
        "apt-get install redis-server",
        "brew install redis",
        "PM_REDIS_URL",
        "install PostgreSQL ≥ 14",
        "apt-get install postgresql",
        "brew install postgresql",
        "PM_DATABASE_URL",
    ):
        assert needle in message
    assert not (home / "redis").exists()


async def test_a_failure_stops_what_the_call_had_started(home: Path) -> None:
    # Only redis-server is installed: Redis starts privately, PostgreSQL cannot, and Redis must not linger.
    folder = home.parent / "redis-only-bin"
    folder.mkdir()
    real = shutil.which("redis-server")
    assert real is not None, "redis-server must be installed for this test"
    (folder / "redis-server").symlink_to(real)
    search = isolated(home, path=str(folder), postgres_bin_globs=())

    with pytest.raises(devenv.DevEnvError) as caught:
        await devenv.ensure(search, {})

    assert "install PostgreSQL" in str(caught.value)
    assert "install Redis" not in str(caught.value)
    port = json.loads(devenv.PrivateRedis(home / "redis").state_file.read_text())["port"]
    assert not await devenv.port_open("127.0.0.1", port)


def test_default_home_prefers_pm_home_then_the_workspace_root(tmp_path: Path) -> None:
    (tmp_path / "uv.lock").touch()
    nested = tmp_path / "services" / "gateway"
    nested.mkdir(parents=True)

    assert devenv.default_home({}, cwd=nested) == tmp_path / ".pm"
    assert devenv.default_home({"PM_HOME": str(tmp_path / "elsewhere")}, cwd=nested) == tmp_path / "elsewhere"


def test_the_env_file_is_pm_env_file_else_env_in_the_checkouts_pm_home(tmp_path: Path) -> None:
    named = tmp_path / "named.env"

    assert devenv.env_file_path({"PM_ENV_FILE": str(named), "PM_HOME": "/x"}) == named
    assert devenv.env_file_path({"PM_HOME": str(tmp_path / "home")}) == tmp_path / "home" / "env"


def test_with_env_file_adds_what_the_environment_does_not_set(tmp_path: Path) -> None:
    env_file = tmp_path / "env"
    env_file.write_text(
        "# comment\nPM_REDIS_URL=redis://from-file/0\nPM_DATABASE_URL='postgresql://file/pm'\n"
        "PM_KEY_ENCRYPTION_KEY=k\nPATH=/not/ours\nPM_ENV_FILE=/loop\n"
    )
    environ = {"PM_ENV_FILE": str(env_file), "PM_DATABASE_URL": "postgresql://set/pm", "PATH": "/bin"}

    merged = devenv.with_env_file(environ)

    assert merged == {
        "PM_DATABASE_URL": "postgresql://set/pm",  # set: it wins
        "PM_REDIS_URL": "redis://from-file/0",
        "PM_KEY_ENCRYPTION_KEY": "k",
        "PATH": "/bin",  # only PM_* variables come from the file
    }
    assert environ["PM_ENV_FILE"] == str(env_file)  # the caller's mapping is left alone
    assert devenv.with_env_file({"PM_ENV_FILE": str(tmp_path / "none"), "A": "b"}) == {"A": "b"}


def test_cli_ensure_writes_the_env_file(home: Path) -> None:
    env_file = home.parent / "out" / "env"
    environ = {"PM_HOME": str(home), "PM_REDIS_URL": GOOD_REDIS_URL, "PM_DATABASE_URL": GOOD_DATABASE_URL}

    result = CliRunner().invoke(dev_cmd.app, ["ensure", "--env-file", str(env_file)], env=environ)

    assert result.exit_code == 0, result.output
    lines = [line for line in env_file.read_text().splitlines() if not line.startswith("#")]
    assert lines[:2] == [f"PM_REDIS_URL={GOOD_REDIS_URL}", f"PM_DATABASE_URL={GOOD_DATABASE_URL}"]
    (key_line,) = lines[2:]
    name, _, value = key_line.partition("=")
    assert name == "PM_KEY_ENCRYPTION_KEY"
    assert len(base64.b64decode(value, validate=True)) == 32
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600


def test_cli_ensure_keeps_the_key_encryption_key_already_in_the_env_file(home: Path) -> None:
    env_file = home.parent / "out" / "env"
    environ = {"PM_HOME": str(home), "PM_REDIS_URL": GOOD_REDIS_URL, "PM_DATABASE_URL": GOOD_DATABASE_URL}

    def invoke() -> Result:
        return CliRunner().invoke(dev_cmd.app, ["ensure", "--env-file", str(env_file)], env=environ)

    assert invoke().exit_code == 0
    first = devenv.read_env_file(env_file)["PM_KEY_ENCRYPTION_KEY"]
    assert invoke().exit_code == 0
    assert devenv.read_env_file(env_file)["PM_KEY_ENCRYPTION_KEY"] == first

    kept = base64.b64encode(bytes(range(32))).decode()
    env_file.write_text(f"PM_REDIS_URL=redis://old\nPM_KEY_ENCRYPTION_KEY='{kept}'\n")
    assert invoke().exit_code == 0
    written = devenv.read_env_file(env_file)
    assert written["PM_KEY_ENCRYPTION_KEY"] == kept
    assert written["PM_REDIS_URL"] == GOOD_REDIS_URL

    other = home.parent / "other" / "env"
    result = CliRunner().invoke(dev_cmd.app, ["ensure", "--env-file", str(other)], env=environ)
    assert result.exit_code == 0
    assert devenv.read_env_file(other)["PM_KEY_ENCRYPTION_KEY"] != first


def test_cli_ensure_exits_1_with_the_reason(home: Path) -> None:
    env_file = home.parent / "env"
    bad = f"redis://127.0.0.1:{free_port()}/0"
    environ = {"PM_HOME": str(home), "PM_REDIS_URL": bad, "PM_DATABASE_URL": GOOD_DATABASE_URL}

    result = CliRunner().invoke(dev_cmd.app, ["ensure", "--env-file", str(env_file)], env=environ)

    assert result.exit_code == 1
    assert "PM_REDIS_URL" in result.output and "does not answer" in result.output
    assert not env_file.exists()


def test_cli_stop_stops_private_instances(home: Path) -> None:
    found = asyncio.run(devenv.find_redis(isolated(home), {}))
    assert found.started
    pid = int((home / "redis" / "redis.pid").read_text())

    result = CliRunner().invoke(dev_cmd.app, ["stop"], env={"PM_HOME": str(home)})

    assert result.exit_code == 0, result.output
    assert "stopped Redis" in result.output
    assert not devenv._pid_alive(pid)
