"""Metrics by route and status, auth failures by reason, and the access log."""

from __future__ import annotations

import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pm_tools.testing.gateway import Gateway, Key


async def scrape(gateway: Gateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    text = (await gateway.http.get(gateway.url + "/metrics")).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_requests_latency_and_auth_failures_are_counted(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    before = await scrape(gateway)
    caplog.set_level(logging.INFO, logger="pm_gateway.access")
    assert (await gateway.send("GET", "/v1/intents")).status_code == 200
    assert (await gateway.send("GET", "/v1/intents")).status_code == 200
    ghost = Key("pk_" + "f" * 24, "nope")
    assert (await gateway.send("GET", "/v1/intents", key=ghost)).status_code == 401
    after = await scrape(gateway)

    route = {"method": "GET", "route": "/v1/intents"}
    assert (
        value(after, "pm_gateway_requests_total", **route, status="200")
        - value(before, "pm_gateway_requests_total", **route, status="200")
        == 2
    )
    assert (
        value(after, "pm_gateway_requests_total", **route, status="401")
        - value(before, "pm_gateway_requests_total", **route, status="401")
        == 1
    )
    assert (
        value(after, "pm_gateway_request_seconds_count", **route)
        - value(before, "pm_gateway_request_seconds_count", **route)
        == 3
    )
    assert (
        value(after, "pm_gateway_auth_failures_total", reason="auth_unknown_key")
        - value(before, "pm_gateway_auth_failures_total", reason="auth_unknown_key")
        == 1
    )
    lines = [r for r in caplog.records if r.name == "pm_gateway.access"]
    assert any("GET /v1/intents 401" in r.getMessage() for r in lines), [r.getMessage() for r in lines]
    assert all(getattr(r, "request_id", None) for r in lines)
