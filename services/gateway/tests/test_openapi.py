"""`GET /openapi.json` is generated from the types, and the committed copy is current."""

from __future__ import annotations

from pathlib import Path

import msgspec

from pm_gateway import openapi
from pm_gateway.routes import ENDPOINTS
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
        assert set(operation["responses"]) == {str(s) for s in endpoint.responses}
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
