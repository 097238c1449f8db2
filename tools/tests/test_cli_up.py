"""`pm up`: which children it runs, the sandboxes' callbacks wired to the gateway it starts, and the
key-encryption key it runs them with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from pm_shared.db import Conn, connect
from pm_shared.fleet import FLEET
from pm_shared.keys.crypto import Cipher, KeyConfigError
from pm_shared.keys.store import Permissions, create_key
from pm_tools import keys
from pm_tools.cli.up_cmd import select
from pm_tools.devenv import DevEnv, Endpoint, Strategy
from pm_tools.devenv.envfile import FILE_VARIABLE, KEY_VARIABLE, new_key_encryption_key, read_env_file
from pm_tools.up import callback_wiring, fleet_env, front_door, front_door_wiring, qp_token_wiring

PERMISSIONS = Permissions(operations=frozenset({"P2P"}), owners=None)

SANDBOXES_ONLY = select(FLEET, "ipps-sandbox,qp-sandbox")


def test_select_keeps_fleet_order_and_refuses_unknown_names() -> None:
    assert [c.name for c in select(FLEET, "qp_sandbox, gateway")] == ["gateway", "qp-sandbox"]
    assert select(FLEET, None) == FLEET
    with pytest.raises(typer.BadParameter, match="nope"):
        select(FLEET, "gateway,nope")


def test_the_sandboxes_call_back_the_gateway_on_its_port() -> None:
    assert callback_wiring(FLEET, {}) == {
        "PM_IPPS_SANDBOX_CALLBACK_URL": "http://127.0.0.1:8080/v1/webhooks/ipps",
        "PM_QP_SANDBOX_CALLBACK_URL": "http://127.0.0.1:8080/v1/webhooks/qp",
    }
    moved = callback_wiring(FLEET, {"PM_GATEWAY_PORT": "18080"})
    assert moved["PM_IPPS_SANDBOX_CALLBACK_URL"] == "http://127.0.0.1:18080/v1/webhooks/ipps"
    assert moved["PM_QP_SANDBOX_CALLBACK_URL"] == "http://127.0.0.1:18080/v1/webhooks/qp"


def test_a_secret_set_on_one_side_is_given_to_the_other() -> None:
    wiring = callback_wiring(
        FLEET, {"PM_GATEWAY_IPPS_CALLBACK_SECRET": "ipps-s3cret", "PM_QP_SANDBOX_SECRET": "qp-s3cret"}
    )
    assert wiring["PM_IPPS_SANDBOX_CALLBACK_SECRET"] == "ipps-s3cret"
    assert wiring["PM_GATEWAY_QP_CALLBACK_SECRET"] == "qp-s3cret"
    assert "PM_GATEWAY_IPPS_CALLBACK_SECRET" not in wiring and "PM_QP_SANDBOX_SECRET" not in wiring


def test_what_the_environment_sets_is_kept() -> None:
    environ = {
        "PM_IPPS_SANDBOX_CALLBACK_URL": "http://elsewhere/hook",
        "PM_QP_SANDBOX_SECRET": "one",
        "PM_GATEWAY_QP_CALLBACK_SECRET": "another",
    }
    assert callback_wiring(FLEET, environ) == {
        "PM_QP_SANDBOX_CALLBACK_URL": "http://127.0.0.1:8080/v1/webhooks/qp"
    }


def test_the_qp_sandbox_and_adapter_qp_share_one_secret() -> None:
    assert qp_token_wiring({"PM_QP_SANDBOX_SECRET": "s"}) == {"PM_ADAPTER_QP_QP_SECRET": "s"}
    assert qp_token_wiring({"PM_ADAPTER_QP_QP_SECRET": "t"}) == {"PM_QP_SANDBOX_SECRET": "t"}
    assert qp_token_wiring({"PM_ADAPTER_QP_QP_SECRET": "t", "PM_QP_SANDBOX_SECRET": "u"}) == {}
    assert qp_token_wiring({}) == {}


def test_without_the_gateway_the_sandboxes_send_no_callbacks() -> None:
    assert callback_wiring(SANDBOXES_ONLY, {}) == {}


def test_every_wired_variable_is_one_its_service_knows() -> None:
    # An unknown PM_* variable stops a service at start: the names must be the services' own.
    from pm_gateway.settings import PREFIX as GATEWAY_PREFIX
    from pm_gateway.settings import Settings as Gateway
    from pm_sandbox_ipps import settings as ipps_sandbox
    from pm_sandbox_qp import settings as qp_sandbox
    from pm_shared.settings import load_settings

    environ = {"PM_GATEWAY_IPPS_CALLBACK_SECRET": "a", "PM_QP_SANDBOX_SECRET": "b"}
    env = {**environ, **callback_wiring(FLEET, environ)}
    gateway = load_settings(Gateway, GATEWAY_PREFIX, env)
    ipps = ipps_sandbox.load(env)
    qp = qp_sandbox.load(env)
    assert ipps.callback_url.endswith("/v1/webhooks/ipps") and qp.callback_url.endswith("/v1/webhooks/qp")
    assert (gateway.ipps_callback_secret, gateway.qp_callback_secret) == (ipps.callback_secret, qp.secret)
    # And unconfigured, both sides' defaults agree.
    defaults = load_settings(Gateway, GATEWAY_PREFIX, {})
    assert defaults.ipps_callback_secret == ipps_sandbox.load({}).callback_secret
    assert defaults.qp_callback_secret == qp_sandbox.load({}).secret


async def test_pm_up_never_makes_a_new_encryption_key_while_keys_are_stored(
    db_conn: Conn, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    urls = {"PM_REDIS_URL": "redis://127.0.0.1:6379/0"}
    if not await keys.stored_keys(db_conn):
        await create_key(db_conn, Cipher.from_setting(new_key_encryption_key()), permissions=PERMISSIONS)

    with pytest.raises(KeyConfigError, match=f"in the environment or in {env_file}"):
        await keys.checkout_key(db_conn, {}, env_file, urls)
    assert not env_file.exists()
    # The key in use, from the environment or the env file, is taken as it is.
    assert await keys.checkout_key(db_conn, {KEY_VARIABLE: "set"}, env_file, urls) == "set"
    env_file.write_text(f"{KEY_VARIABLE}=kept\n")
    assert await keys.checkout_key(db_conn, {}, env_file, urls) == "kept"


async def test_pm_up_makes_and_keeps_the_first_encryption_key(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env_file = tmp_path / "env"
    urls = {"PM_REDIS_URL": "redis://127.0.0.1:6379/0"}
    conn = await connect(fresh_database_url)
    try:
        made = await keys.checkout_key(conn, {}, env_file, urls)
        assert read_env_file(env_file) == {**urls, KEY_VARIABLE: made}
        assert await keys.checkout_key(conn, {}, env_file, urls) == made
    finally:
        await conn.close()


def test_the_fleet_gets_our_settings_and_the_servers_found_but_not_pm_env_file() -> None:
    # The tools' tests run with PM_ENV_FILE set (conftest): no service knows it, so none may get it.
    assert os.environ.get(FILE_VARIABLE)
    infra = DevEnv(
        redis=Endpoint("redis://127.0.0.1:6390/0", Strategy.PRIVATE, "test"),
        postgres=Endpoint("postgresql://postgres@127.0.0.1:5440/pm", Strategy.PRIVATE, "test"),
    )

    env = fleet_env(infra, FLEET, "the-key", json_logs=True)

    assert FILE_VARIABLE not in env
    assert env["PM_REDIS_URL"] == "redis://127.0.0.1:6390/0"
    assert env["PM_DATABASE_URL"] == "postgresql://postgres@127.0.0.1:5440/pm"
    assert (env[KEY_VARIABLE], env["PM_LOG_FORMAT"]) == ("the-key", "json")
    assert env["PM_IPPS_SANDBOX_CALLBACK_URL"].endswith("/v1/webhooks/ipps")


def test_the_front_door_stands_before_this_runs_gateway_and_auth_center() -> None:
    env = {"PM_GATEWAY_PORT": "18080", "PM_AUTH_SANDBOX_PORT": "19203"}
    wired = front_door_wiring(env)
    assert len(wired["PM_GATEWAY_PROXY_SECRET"]) >= 32  # what the gateway requires (PROXY_SECRET_MIN)
    assert front_door_wiring({"PM_GATEWAY_PROXY_SECRET": "set"}) == {}  # a secret set is kept
    door = front_door(FLEET, {**env, **wired})
    assert door is not None
    assert (door.gateway_url, door.auth_url) == ("http://127.0.0.1:18080", "http://127.0.0.1:19203")
    assert door.proxy_secret == wired["PM_GATEWAY_PROXY_SECRET"] and door.listen == "127.0.0.1:8000"
    assert front_door(select(FLEET, "gateway"), {**env, **wired}) is None  # no Auth Center in the run
