"""The gateway's PSP callback and front-door settings and their documentation: the secrets' defaults
match the sandboxes', a malformed allowlist or a short proxy secret stops the start, and the webhooks
need no service key."""

from __future__ import annotations

import pytest

from pm_gateway import openapi
from pm_gateway.settings import Settings, load
from pm_shared.settings import SettingsError
from pm_tools.testing.gateway import key_encryption_key


def test_the_callback_secrets_default_to_the_sandboxes_defaults() -> None:
    from pm_sandbox_ipps.settings import Settings as IppsSandbox
    from pm_sandbox_qp.settings import Settings as QpSandbox

    defaults = Settings()
    assert defaults.ipps_callback_secret == IppsSandbox().callback_secret
    assert defaults.qp_callback_secret == QpSandbox().secret
    assert defaults.ipps_callback_allowlist == defaults.qp_callback_allowlist == "127.0.0.1/32,::1/128"
    assert defaults.callback_trusted_proxies == ""
    assert defaults.callback_dedupe_ttl_s == 7 * 86_400


def test_a_malformed_allowlist_stops_the_start_naming_the_variable() -> None:
    env = {"PM_KEY_ENCRYPTION_KEY": key_encryption_key(), "PM_GATEWAY_QP_CALLBACK_ALLOWLIST": "10.0.0.0/33"}
    with pytest.raises(SettingsError, match="PM_GATEWAY_QP_CALLBACK_ALLOWLIST"):
        load(env)
    assert load({**env, "PM_GATEWAY_QP_CALLBACK_ALLOWLIST": "10.0.0.0/8, ::1"}).qp_callback_allowlist


def test_the_webhooks_are_documented_without_a_service_key() -> None:
    paths = openapi.document()["paths"]
    for path, headers in (
        ("/v1/webhooks/ipps", {"X-IPPS-Signature"}),
        ("/v1/webhooks/qp", {"X-QP-Timestamp", "X-QP-Signature"}),
    ):
        operation = paths[path]["post"]
        assert operation["security"] == []
        assert {p["name"] for p in operation["parameters"]} == headers
        assert set(operation["responses"]) >= {"200", "401", "403", "503"}
    assert paths["/v1/intents"]["post"]["security"] == [{"serviceKey": []}]


@pytest.mark.parametrize("secret", ["REPLACE_ME", "x" * 31])
def test_a_short_proxy_secret_stops_the_start(secret: str) -> None:
    # Whoever knows the proxy secret may speak for any user: a placeholder left in place must not serve.
    env = {"PM_KEY_ENCRYPTION_KEY": key_encryption_key(), "PM_GATEWAY_PROXY_SECRET": secret}
    with pytest.raises(SettingsError, match="PM_GATEWAY_PROXY_SECRET"):
        load(env)
    assert load({**env, "PM_GATEWAY_PROXY_SECRET": "x" * 32}).proxy_secret == "x" * 32
    assert load({**env, "PM_GATEWAY_PROXY_SECRET": ""}).proxy_secret == ""
