"""Property: no request body, however malformed, makes the intake answer 5xx."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pm_client import signing
from pm_tools.testing.gateway import Gateway

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
parties = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"kind": st.sampled_from(["user", "operator", "sbp", "promptpay", "thaiqr", "alien"])},
        optional={
            "id": st.one_of(st.text(max_size=70), st.integers()),
            "proxyType": st.sampled_from(["MSISDN", "NATID", "EWALLET", "BILLER", "X"]),
            "proxyValue": st.text(max_size=40),
            "ref1": st.text(max_size=25),
            "payload": st.text(max_size=30),
        },
    ),
)
intents = st.fixed_dictionaries(
    {},
    optional={
        "type": st.one_of(
            st.sampled_from(["P2P", "PROMPTPAY_WITHDRAWAL", "SBP_TOPUP", "ADJUSTMENT", "p2p"]), json_values
        ),
        "amount": st.one_of(st.integers(min_value=-(2**70), max_value=2**70), json_values),
        "currency": st.one_of(st.sampled_from(["THB", "USD", "RUB", "EUR", ""]), json_values),
        "from": parties,
        "to": parties,
        "fromName": st.one_of(st.text(max_size=120), json_values),
        "comment": st.one_of(st.text(max_size=600), json_values),
        "requiresMonitoring": json_values,
        "metadata": json_values,
    },
)
bodies = st.one_of(
    intents.map(msgspec.json.encode), json_values.map(msgspec.json.encode), st.binary(max_size=200)
)


async def test_no_body_makes_the_intake_fail_with_a_5xx(gateway: Gateway) -> None:
    statuses: list[int] = []

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(body=bodies)
    def post(body: bytes) -> None:
        headers = signing.headers(gateway.user.key_id, gateway.user.secret, "POST", "/v1/intents", body)
        headers["Idempotency-Key"] = str(uuid.uuid4())
        headers["Content-Type"] = "application/json"
        with httpx.Client(timeout=10) as client:
            response = client.post(gateway.url + "/v1/intents", content=body, headers=headers)
        statuses.append(response.status_code)
        assert response.status_code < 500, (body, response.text)
        if response.status_code >= 400:
            problem: Any = msgspec.json.decode(response.content)
            assert problem["status"] == response.status_code and problem["code"]

    # The gateway runs in this event loop; the examples are sent from a thread meanwhile.
    await asyncio.to_thread(post)
    assert len(statuses) >= 100
    assert any(s == 202 for s in statuses) or any(s == 422 for s in statuses)
