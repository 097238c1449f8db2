"""`pm keys create|rotate|deactivate|list` on real PostgreSQL."""

from __future__ import annotations

import base64
import re
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner, Result

from pm_shared.db import connect
from pm_shared.keys import store
from pm_shared.keys.crypto import Cipher
from pm_tools import keys as pm_keys
from pm_tools.cli import common, keys_cmd
from pm_tools.testing.db import run

SETTING = base64.b64encode(bytes(range(100, 132))).decode()
UNREACHABLE_DB = "postgresql://postgres@127.0.0.1:1/pm_nowhere"
KEY_ID = re.compile(r"pk_[0-9a-f]{24}")


def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(keys_cmd.app, name="keys")
    return app


def explain(result: Result) -> str:
    return (
        f"exit {result.exit_code}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}\n{result.exception!r}"
    )


@pytest.fixture(autouse=True)
def plain_consoles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "out", Console(highlight=False, emoji=False, color_system=None))
    monkeypatch.setattr(common, "err", Console(stderr=True, highlight=False, emoji=False, color_system=None))


class Keys:
    def __init__(self, url: str) -> None:
        self.url = url
        self.cipher = Cipher.from_setting(SETTING)

    def invoke(self, args: Sequence[str], **env: str | None) -> Result:
        environ: dict[str, str | None] = {"PM_DATABASE_URL": self.url, "PM_KEY_ENCRYPTION_KEY": SETTING}
        environ.update(env)
        return CliRunner().invoke(cli(), ["keys", *args], env=environ)

    def ok(self, args: Sequence[str]) -> Result:
        result = self.invoke(args)
        assert result.exit_code == 0, explain(result)
        return result

    def json(self, args: Sequence[str]) -> Any:
        return msgspec.json.decode(self.ok([*args, "--json"]).stdout)

    def secrets(self, key_id: str) -> tuple[store.ServiceKey, list[str]] | None:
        async def work() -> tuple[store.ServiceKey, list[str]] | None:
            conn = await connect(self.url)
            try:
                return await store.verification_secrets(conn, self.cipher, key_id)
            finally:
                await conn.close()

        return run(work())

    def count(self) -> int:
        async def work() -> int:
            conn = await connect(self.url)
            try:
                return int(await conn.fetchval("SELECT count(*) FROM pm.service_key"))
            finally:
                await conn.close()

        return run(work())


@pytest.fixture
def keys(database_url: str) -> Keys:
    return Keys(database_url)


def test_create_json_prints_a_key_id_and_a_secret_that_verifies(keys: Keys) -> None:
    made = keys.json(["create"])

    assert KEY_ID.fullmatch(made["keyId"])
    assert made["key"]["keyId"] == made["keyId"] and made["key"]["status"] == "active"
    assert made["key"]["permissions"] == {
        "operations": ["FX_EXCHANGE", "P2P", "PROMPTPAY_WITHDRAWAL", "SBP_TOPUP"],
        "owners": None,
        "admin": False,
        "merchant": None,  # a merchant's key names its merchant here
    }
    found = keys.secrets(made["keyId"])
    assert found is not None
    key, secrets = found
    assert secrets == [made["secret"]]
    assert not key.permissions.allows_operation("ADJUSTMENT")


def test_create_human_output_shows_the_secret_once_with_a_warning(keys: Keys) -> None:
    result = keys.ok(
        ["create", "--admin", "--operation", "p2p", "--operation", "ADJUSTMENT", "--owner", "u-1"]
        + ["--owner", "u-2", "--description", "back office"]
    )

    (key_id,) = set(KEY_ID.findall(result.stdout))
    (secret,) = re.findall(r"^secret: (\S+)$", result.stdout, re.MULTILINE)
    assert "not shown again" in result.stderr
    found = keys.secrets(key_id)
    assert found is not None
    key, secrets = found
    assert secrets == [secret]
    assert key.permissions == store.Permissions(
        operations=frozenset({"P2P", "ADJUSTMENT"}), owners=frozenset({"u-1", "u-2"}), admin=True
    )
    assert key.description == "back office"
    assert "back office" in result.stdout and "u-1, u-2" in result.stdout


def test_create_admin_defaults_to_every_operation(keys: Keys) -> None:
    made = keys.json(["create", "--admin"])

    assert made["key"]["permissions"]["operations"] == sorted(pm_keys.OPERATIONS)
    assert made["key"]["permissions"]["admin"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--operation", "ADJUSTMENT"], "admin keys only"),
        (["--operation", "P2P", "--operation", "*"], "admin keys only"),
        (["--operation", "REFUND"], "unknown operation 'REFUND'"),
        (["--owner", " "], "--owner"),
    ],
)
def test_create_refuses_bad_permissions_with_exit_2(keys: Keys, args: list[str], message: str) -> None:
    before = keys.count()

    result = keys.invoke(["create", *args])

    assert result.exit_code == 2, explain(result)
    assert message in result.stderr
    assert keys.count() == before


@pytest.mark.parametrize(
    ("value", "message"),
    [(None, "PM_KEY_ENCRYPTION_KEY is not set"), ("bm90IDMyIGJ5dGVz", "PM_KEY_ENCRYPTION_KEY must decode")],
)
def test_create_and_rotate_need_a_valid_encryption_key(keys: Keys, value: str | None, message: str) -> None:
    made = keys.json(["create"])
    before = keys.count()

    for args in (["create"], ["rotate", made["keyId"]]):
        result = keys.invoke(args, PM_KEY_ENCRYPTION_KEY=value)
        assert result.exit_code == 2, explain(result)
        assert message in result.stderr
        assert value is None or value not in result.stderr
    assert keys.count() == before
    assert keys.secrets(made["keyId"]) is not None


def test_rotate_with_grace_keeps_the_old_secret_and_without_drops_it(keys: Keys) -> None:
    made = keys.json(["create"])
    key_id = made["keyId"]

    graced = keys.json(["rotate", key_id])
    assert graced["keyId"] == key_id and graced["secret"] != made["secret"]
    assert graced["key"]["previousValidUntil"] is not None
    found = keys.secrets(key_id)
    assert found is not None and found[1] == [graced["secret"], made["secret"]]

    result = keys.ok(["rotate", key_id, "--grace", "0"])
    (secret,) = re.findall(r"^secret: (\S+)$", result.stdout, re.MULTILINE)
    assert "the previous secret is no longer valid" in result.stdout
    assert "not shown again" in result.stderr
    found = keys.secrets(key_id)
    assert found is not None and found[1] == [secret]


def test_rotate_human_output_says_until_when_the_previous_secret_works(keys: Keys) -> None:
    made = keys.json(["create"])

    result = keys.ok(["rotate", made["keyId"], "--grace", "60"])

    assert "the previous secret stays valid until" in result.stdout
    assert made["secret"] not in result.stdout


def test_deactivate_leaves_a_key_with_no_valid_secret(keys: Keys) -> None:
    made = keys.json(["create"])
    key_id = made["keyId"]

    result = keys.ok(["deactivate", key_id])
    assert f"deactivated {key_id}" in result.stdout
    found = keys.secrets(key_id)
    assert found is not None
    assert (found[0].status, found[1]) == ("inactive", [])

    again = keys.json(["deactivate", key_id])
    assert again["status"] == "inactive" and again["deactivatedAt"] is not None
    assert "secret" not in again


@pytest.mark.parametrize("command", [["rotate"], ["deactivate"], ["rotate", "--grace", "0"]])
def test_an_unknown_key_id_exits_1(keys: Keys, command: list[str]) -> None:
    missing = "pk_" + "d" * 24

    result = keys.invoke([command[0], missing, *command[1:]])

    assert result.exit_code == 1, explain(result)
    assert f"no service key '{missing}'" in result.stderr


def test_list_shows_every_key_and_never_a_secret(keys: Keys) -> None:
    first = keys.json(["create", "--description", "listed one"])
    second = keys.json(["create", "--admin", "--owner", "u-9"])
    keys.ok(["deactivate", second["keyId"]])

    human = keys.ok(["list"])
    assert first["keyId"] in human.stdout and second["keyId"] in human.stdout
    assert "listed one" in human.stdout and "inactive" in human.stdout

    listed = keys.json(["list"])
    by_id = {k["keyId"]: k for k in listed}
    assert by_id[first["keyId"]]["status"] == "active"
    assert by_id[second["keyId"]]["status"] == "inactive"
    assert by_id[second["keyId"]]["permissions"]["owners"] == ["u-9"]
    raw = keys.ok(["list", "--json"]).stdout + human.stdout
    for secret in (first["secret"], second["secret"]):
        assert secret not in raw
    assert all("secret" not in k for k in listed)


def test_list_needs_no_encryption_key(keys: Keys) -> None:
    result = keys.invoke(["list", "--json"], PM_KEY_ENCRYPTION_KEY=None)

    assert result.exit_code == 0, explain(result)


def test_an_unreachable_database_exits_2(keys: Keys) -> None:
    result = keys.invoke(["list"], PM_DATABASE_URL=UNREACHABLE_DB)

    assert result.exit_code == 2, explain(result)
    assert "cannot reach the database" in result.stderr


def test_an_unmigrated_database_exits_2_and_says_to_migrate(keys: Keys, empty_database_url: str) -> None:
    result = keys.invoke(["create"], PM_DATABASE_URL=empty_database_url)

    assert result.exit_code == 2, explain(result)
    assert "pm migrate" in result.stderr


# --- the env file: a second terminal after `make up` ------------------------------------------------


def write_env(path: Path, **values: str) -> None:
    path.write_text(
        "# as `pm dev ensure` writes it\n" + "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())
    )


def test_without_the_variables_the_env_file_is_read(keys: Keys, no_env_file: Path) -> None:
    write_env(no_env_file, PM_DATABASE_URL=keys.url, PM_KEY_ENCRYPTION_KEY=SETTING)

    result = keys.invoke(["create", "--json"], PM_DATABASE_URL=None, PM_KEY_ENCRYPTION_KEY=None)

    assert result.exit_code == 0, explain(result)
    made = msgspec.json.decode(result.stdout)
    found = keys.secrets(made["keyId"])  # made in the env file's database, under the env file's key
    assert found is not None and found[1] == [made["secret"]]


def test_a_variable_that_is_set_wins_over_the_env_file(keys: Keys, no_env_file: Path) -> None:
    write_env(no_env_file, PM_DATABASE_URL=UNREACHABLE_DB, PM_KEY_ENCRYPTION_KEY="bm90IDMyIGJ5dGVz")

    made = keys.json(["create"])  # the environment's database and key, both good

    assert keys.secrets(made["keyId"]) is not None


def test_the_env_file_named_by_pm_env_file_is_read(keys: Keys, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.env"
    write_env(elsewhere, PM_DATABASE_URL=keys.url)

    result = keys.invoke(["list", "--json"], PM_DATABASE_URL=None, PM_ENV_FILE=str(elsewhere))

    assert result.exit_code == 0, explain(result)


def test_a_missing_encryption_key_while_keys_exist_says_where_it_belongs(
    keys: Keys, no_env_file: Path
) -> None:
    keys.json(["create"])  # a secret stored under SETTING
    before = keys.count()

    for args in (["create"], ["rotate", "pk_000000000000000000000000"]):
        result = keys.invoke(args, PM_KEY_ENCRYPTION_KEY=None)

        assert result.exit_code == 2, explain(result)
        message = " ".join(result.stderr.split())
        assert "PM_KEY_ENCRYPTION_KEY is not set, and pm.service_key holds" in message
        wanted = "set PM_KEY_ENCRYPTION_KEY to the key they were made with, in the environment or in"
        assert f"{wanted} {no_env_file}" in message
        # Nothing that would make a new key: that would leave every stored secret unreadable.
        assert "urandom" not in message and "python3" not in message and "b64encode" not in message
    assert keys.count() == before


def test_a_missing_encryption_key_before_any_key_exists_says_how_to_make_one(
    keys: Keys, fresh_database_url: str
) -> None:
    result = keys.invoke(["create"], PM_DATABASE_URL=fresh_database_url, PM_KEY_ENCRYPTION_KEY=None)

    assert result.exit_code == 2, explain(result)
    assert (
        "PM_KEY_ENCRYPTION_KEY is not set, and no service key is stored yet: set it to the base64 of 32"
        in (result.stderr)
    )
