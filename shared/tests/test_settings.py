"""Settings come from PM_* variables; unknown or malformed ones stop the process with a clear message."""

from __future__ import annotations

import pytest

from pm_shared import fleet
from pm_shared.settings import CommonSettings, Port, SettingsError, load_settings


class Svc(CommonSettings, frozen=True, kw_only=True, forbid_unknown_fields=True):
    port: Port = 9000


def test_defaults_without_variables() -> None:
    settings = load_settings(Svc, "GATEWAY_", {})
    assert settings.port == 9000
    assert settings.stream_maxlen == 10_000
    assert settings.backpressure_threshold == 5_000


def test_common_and_own_variables_are_coerced() -> None:
    env = {"PM_REDIS_URL": "redis://r:1/2", "PM_GATEWAY_PORT": "8081", "PM_STREAM_PARTITIONS": "4"}
    settings = load_settings(Svc, "GATEWAY_", env)
    assert (settings.redis_url, settings.port, settings.stream_partitions) == ("redis://r:1/2", 8081, 4)


def test_another_services_variables_are_left_to_it() -> None:
    settings = load_settings(Svc, "GATEWAY_", {"PM_ORCHESTRATOR_PORT": "not even a number"})
    assert settings.port == 9000


@pytest.mark.parametrize("name", ["PM_ENV_FILE", "PM_HOME", "PM_TEST_REDIS_DB"])
def test_the_tools_own_variables_are_not_unknown_to_a_service(name: str) -> None:
    # A service started from a shell where the CLI's variables are set must still start.
    assert load_settings(Svc, "GATEWAY_", {name: "/somewhere"}).port == 9000


def test_a_variable_under_another_members_prefix_is_left_to_that_member() -> None:
    env = {f"PM_{m.prefix}ANYTHING": "x" for m in fleet.FLEET if m.prefix != "GATEWAY_"}
    assert len(env) == len(fleet.FLEET) - 1
    assert load_settings(Svc, "GATEWAY_", env).port == 9000


def test_unrelated_environment_is_ignored() -> None:
    assert load_settings(Svc, "GATEWAY_", {"HOME": "/root", "PMX": "1"}).port == 9000


@pytest.mark.parametrize("name", ["PM_REDIS_ULR", "PM_GATEWAY_PROT"])
def test_unknown_variable_is_an_error_naming_it(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(Svc, "GATEWAY_", {name: "x"})


@pytest.mark.parametrize(
    ("name", "value"),
    [("PM_GATEWAY_PORT", "eighty"), ("PM_GATEWAY_PORT", "70000"), ("PM_STREAM_BLOCK_MS", "5000")],
)
def test_malformed_value_is_an_error_naming_the_variable(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(Svc, "GATEWAY_", {name: value})


def test_explicit_threshold_wins_over_half_of_maxlen() -> None:
    env = {"PM_STREAM_MAXLEN": "1000", "PM_STREAM_BACKPRESSURE_THRESHOLD": "100"}
    assert load_settings(Svc, "GATEWAY_", env).backpressure_threshold == 100
    assert load_settings(Svc, "GATEWAY_", {"PM_STREAM_MAXLEN": "1000"}).backpressure_threshold == 500
