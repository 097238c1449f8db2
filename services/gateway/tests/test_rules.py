"""Admin routes for fee rules, limit rules and payment routes; `POST /v1/fees/dry-run`."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from pm_tools.testing.gateway import Gateway


def fee_rule(rule_id: str, **changes: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "ruleId": rule_id,
        "operationType": "P2P",
        "condition": "intent.amount >= 10000",
        "amount": "intent.amount / 100",
        "timing": "PRE",
        "maxFee": 100_000,
    }
    rule.update(changes)
    return rule


def quote(amount: int, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "P2P",
        "amount": amount,
        "currency": "THB",
        "from": {"kind": "user", "id": "u-1"},
        "to": {"kind": "user", "id": "u-2"},
    }
    body.update(changes)
    return body


def decoded(response: Any) -> Any:
    return msgspec.json.decode(response.content)


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def test_fee_rules_are_versioned_and_priced_by_the_dry_run(gateway: Gateway) -> None:
    rule_id = unique("p2p-fee")
    made = await gateway.send("POST", "/v1/admin/fee-rules", fee_rule(rule_id), key=gateway.admin)
    assert made.status_code == 201, made.text
    assert decoded(made)["version"] == 1 and decoded(made)["status"] == "active"

    priced = await gateway.send("POST", "/v1/fees/dry-run", quote(50_000, metadata={"rule": rule_id}))
    assert priced.status_code == 200, priced.text
    mine = [f for f in decoded(priced)["fees"] if f["ruleId"] == rule_id]
    assert mine == [{"ruleId": rule_id, "ruleVersion": 1, "amount": 500, "currency": "THB", "timing": "PRE"}]

    # A new version replaces the old one at once (no restart, no cache to wait for).
    again = await gateway.send(
        "POST", "/v1/admin/fee-rules", fee_rule(rule_id, amount="intent.amount / 50"), key=gateway.admin
    )
    assert decoded(again)["version"] == 2
    priced = await gateway.send("POST", "/v1/fees/dry-run", quote(50_000))
    mine = [f for f in decoded(priced)["fees"] if f["ruleId"] == rule_id]
    assert [(f["ruleVersion"], f["amount"]) for f in mine] == [(2, 1_000)]
    below = await gateway.send("POST", "/v1/fees/dry-run", quote(5_000))
    assert [f for f in decoded(below)["fees"] if f["ruleId"] == rule_id] == []

    retired = await gateway.send("POST", f"/v1/admin/fee-rules/{rule_id}/retire", key=gateway.admin)
    assert decoded(retired)["version"] == 3 and decoded(retired)["status"] == "retired"
    # The retired version keeps everything else of the version it retires.
    unchanged = {k: v for k, v in decoded(again).items() if k not in ("version", "status")}
    assert {k: v for k, v in decoded(retired).items() if k not in ("version", "status")} == unchanged
    priced = await gateway.send("POST", "/v1/fees/dry-run", quote(50_000))
    assert [f for f in decoded(priced)["fees"] if f["ruleId"] == rule_id] == []
    listed = decoded(await gateway.send("GET", "/v1/admin/fee-rules", key=gateway.admin))
    assert {(r["ruleId"], r["version"], r["status"]) for r in listed} >= {(rule_id, 3, "retired")}
    await gateway.send("POST", f"/v1/admin/fee-rules/{rule_id}/retire", key=gateway.admin)


async def test_a_fee_rule_that_does_not_compile_is_refused(gateway: Gateway) -> None:
    rule_id = unique("broken")
    response = await gateway.send(
        "POST", "/v1/admin/fee-rules", fee_rule(rule_id, amount="intent.amount /"), key=gateway.admin
    )
    assert response.status_code == 422
    assert decoded(response)["code"] == "fee_rule_invalid"
    listed = decoded(await gateway.send("GET", "/v1/admin/fee-rules", key=gateway.admin))
    assert rule_id not in {r["ruleId"] for r in listed}


async def test_rule_times_without_an_offset_are_refused(gateway: Gateway) -> None:
    for field in ("activeFrom", "activeUntil"):
        rule = fee_rule(unique("naive"), **{field: "2030-01-01T00:00:00"})
        response = await gateway.send("POST", "/v1/admin/fee-rules", rule, key=gateway.admin)
        assert response.status_code == 422, response.text
        assert decoded(response)["code"] == "validation_failed"


async def test_a_fee_that_cannot_be_charged_is_a_clear_error(gateway: Gateway) -> None:
    rule_id = unique("too-much")
    made = await gateway.send(
        "POST",
        "/v1/admin/fee-rules",
        fee_rule(
            rule_id, operationType="SBP_TOPUP", condition="true", amount="intent.amount * 2", maxFee=1_000
        ),
        key=gateway.admin,
    )
    assert made.status_code == 201, made.text
    try:
        topup = quote(5_000, type="SBP_TOPUP", **{"from": {"kind": "sbp"}})
        response = await gateway.send("POST", "/v1/fees/dry-run", topup)
        assert response.status_code == 422, response.text
        assert decoded(response)["code"] == "fee_excessive"
    finally:
        await gateway.send("POST", f"/v1/admin/fee-rules/{rule_id}/retire", key=gateway.admin)


async def test_limit_rules_and_routes(gateway: Gateway) -> None:
    rule_id = unique("daily")
    body = {
        "ruleId": rule_id,
        "subjectKind": "tier",
        "subject": "basic",
        "operationType": "P2P",
        "currency": "THB",
        "period": "day",
        "maxAmount": 5_000_000,
        "maxCount": 20,
    }
    made = await gateway.send("POST", "/v1/admin/limit-rules", body, key=gateway.admin)
    assert made.status_code == 201 and decoded(made)["version"] == 1
    empty = await gateway.send(
        "POST", "/v1/admin/limit-rules", {**body, "maxAmount": None, "maxCount": None}, key=gateway.admin
    )
    assert empty.status_code == 422
    retired = await gateway.send("POST", f"/v1/admin/limit-rules/{rule_id}/retire", key=gateway.admin)
    assert decoded(retired)["status"] == "retired" and decoded(retired)["version"] == 2

    routes = decoded(await gateway.send("GET", "/v1/admin/routes", key=gateway.admin))
    assert {(r["operationType"], r["channel"]) for r in routes} >= {
        ("P2P", "INTERNAL_P2P"),
        ("ADJUSTMENT", "INTERNAL"),
    }
    changed = await gateway.send(
        "PUT",
        "/v1/admin/routes/P2P/INTERNAL_P2P",
        {"steps": ["validate", "authorize", "settle"]},
        key=gateway.admin,
    )
    assert changed.status_code == 200 and decoded(changed)["steps"] == ["validate", "authorize", "settle"]
    restored = next(r for r in routes if (r["operationType"], r["channel"]) == ("P2P", "INTERNAL_P2P"))
    await gateway.send(
        "PUT", "/v1/admin/routes/P2P/INTERNAL_P2P", {"steps": restored["steps"]}, key=gateway.admin
    )
    bad = await gateway.send("PUT", "/v1/admin/routes/LOAN/X", {"steps": ["validate"]}, key=gateway.admin)
    assert bad.status_code == 404


async def test_rule_admin_needs_an_admin_key(gateway: Gateway) -> None:
    for method, path in [
        ("GET", "/v1/admin/fee-rules"),
        ("GET", "/v1/admin/limit-rules"),
        ("GET", "/v1/admin/routes"),
    ]:
        response = await gateway.send(method, path)
        assert (response.status_code, decoded(response)["code"]) == (403, "forbidden_admin")
