"""`GET /openapi.json` is generated from the types, and the committed copy is current."""

from __future__ import annotations

import ast
import uuid
from pathlib import Path

import msgspec

from pm_client.api import (
    INTENT_TYPES,
    MINIAPP_TYPES,
    CreateIntent,
    LiquidityParty,
    MerchantParty,
    OperatorParty,
    Party,
    PromptPayParty,
    SbpParty,
    ThaiQrParty,
    UserParty,
)
from pm_gateway import openapi, shapes
from pm_gateway.problems import ProblemError
from pm_gateway.routes import ENDPOINTS
from pm_shared import thaiqr
from pm_tools.testing.gateway import Gateway

COMMITTED = Path(__file__).parents[1] / "openapi.json"


def test_the_committed_document_is_current() -> None:
    assert COMMITTED.read_bytes() == openapi.encoded(), (
        "services/gateway/openapi.json is stale: regenerate it with "
        "`uv run python -m pm_gateway.openapi > services/gateway/openapi.json`"
    )


def test_every_route_is_documented_with_its_types() -> None:
    doc = openapi.document()
    for endpoint in ENDPOINTS:
        operation = doc["paths"][endpoint.path][endpoint.method.lower()]
        expected = {*endpoint.responses, *endpoint.all_problems()}
        assert set(operation["responses"]) == {str(s) for s in expected}
        for status, codes in endpoint.all_problems().items():
            schema = operation["responses"][str(status)]["content"]["application/problem+json"]["schema"]
            assert schema["allOf"][1]["properties"]["code"]["enum"] == list(codes)
        assert ("requestBody" in operation) == (endpoint.body is not None)
    schema = doc["components"]["schemas"]["CreateIntent"]
    assert set(schema["required"]) >= {"type", "amount", "currency", "from", "to"}
    assert schema["properties"]["amount"]["type"] == "integer"
    assert schema["properties"]["amount"]["exclusiveMinimum"] == 0
    assert "fromName" in schema["properties"] and "requiresMonitoring" in schema["properties"]


async def test_the_gateway_serves_it(gateway: Gateway) -> None:
    response = await gateway.http.get(gateway.url + "/openapi.json")
    assert response.status_code == 200
    assert msgspec.json.decode(response.content) == openapi.document()


# Answered outside any operation's contract: unknown paths and methods, readiness, a bug.
_APP_LEVEL = {(404, "not_found"), (405, "method_not_allowed"), (503, "not_ready"), (500, "internal_error")}


def _raised_in_sources() -> set[tuple[int, str]]:
    """Every (status, code) the gateway's sources raise with literal arguments."""
    found: set[tuple[int, str]] = set()
    for module in (Path(openapi.__file__).parent).glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            if node.func.id not in {"ProblemError", "refuse"} or len(node.args) < 2:
                continue
            status, code = node.args[0], node.args[1]
            if isinstance(status, ast.Constant) and isinstance(code, ast.Constant):
                assert isinstance(status.value, int) and isinstance(code.value, str)
                found.add((status.value, code.value))
    return found


def test_every_problem_the_sources_raise_is_declared_by_some_operation() -> None:
    declared = {(s, c) for e in ENDPOINTS for s, codes in e.all_problems().items() for c in codes}
    raised = _raised_in_sources()
    assert len(raised) > 20  # the scan finds the handlers' problems at all
    assert raised - declared - _APP_LEVEL == set()


def test_the_documented_party_pairs_are_the_ones_intake_takes() -> None:
    samples: list[Party] = [
        UserParty(id="alice"),
        OperatorParty(),
        SbpParty(),
        PromptPayParty(proxy_type="MSISDN", proxy_value="0812345678"),
        ThaiQrParty(payload=thaiqr.generate_credit_transfer("mobile", "0812345678", amount=100)),
        MerchantParty(id="coffee"),
        LiquidityParty(),
    ]
    targets = [*samples[:4], UserParty(id="bob"), *samples[4:]]
    for intent_type in INTENT_TYPES:
        documented = set(shapes.allowed_pairs(intent_type))
        assert documented
        for source in samples:
            for target in targets:
                request = CreateIntent(
                    type=intent_type,  # type: ignore[arg-type]
                    amount=100,
                    currency="THB",
                    from_=source,
                    to=target,
                    miniapp_id="app" if intent_type in MINIAPP_TYPES else None,
                    quote_id=uuid.uuid4() if intent_type == "FX_EXCHANGE" else None,
                    original_intent_id=uuid.uuid4() if intent_type == "REFUND" else None,
                )
                # Users are one user (an exchange) or two (every other type), beyond the schema.
                same_user_wrong = (source == target) != (intent_type == "FX_EXCHANGE")
                try:
                    shapes.check(request)
                except ProblemError as exc:
                    assert exc.code == "invalid_parties", exc
                    assert (type(source), type(target)) not in documented or same_user_wrong
                else:
                    assert (type(source), type(target)) in documented
