"""`pm up`: which children it runs, and the sandboxes' callbacks wired to the gateway it starts."""

from __future__ import annotations

import pytest
import typer

from pm_tools.cli.up_cmd import FLEET, callback_wiring, qp_token_wiring, select

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
