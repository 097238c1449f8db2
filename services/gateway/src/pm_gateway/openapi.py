"""`GET /openapi.json`: OpenAPI 3.1 built from the route list and the msgspec types, never by hand.

`python -m pm_gateway.openapi` prints it; the committed copy (services/gateway/openapi.json) is
checked against it by the tests, so it cannot drift either.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pm_client import signing
from pm_client.api import Problem
from pm_gateway.problems import MEDIA_TYPE
from pm_gateway.routes import ENDPOINTS

VERSION = "1.0.0"


def document() -> dict[str, Any]:
    types: list[Any] = [Problem]
    for endpoint in ENDPOINTS:
        if endpoint.body is not None:
            types.append(endpoint.body)
        types.extend(t for t in endpoint.responses.values() if t is not None)
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(map(id, types), schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": endpoint.summary,
            "operationId": f"{endpoint.method.lower()}_{endpoint.path.strip('/').replace('/', '_')}".replace(
                "{", ""
            ).replace("}", ""),
            "tags": [endpoint.tag],
            # An empty list: no PM service key (a PSP's callback carries the PSP's own signature).
            "security": [{"serviceKey": []}] if endpoint.signed else [],
            "parameters": [
                {
                    "name": p.name,
                    "in": p.where,
                    "required": p.required,
                    "description": p.description,
                    "schema": p.schema,
                }
                for p in endpoint.params
            ],
            "responses": {},
        }
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[id(endpoint.body)]}},
            }
        for status, body in endpoint.responses.items():
            if body is None:
                operation["responses"][str(status)] = {
                    "description": "A problem document with a stable `code`.",
                    "content": {MEDIA_TYPE: {"schema": refs[id(Problem)]}},
                }
            else:
                operation["responses"][str(status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": refs[id(body)]}},
                }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "PM gateway",
            "version": VERSION,
            "description": (
                "Payment Manager's API. Every request (but the PSPs' callbacks under /v1/webhooks, "
                "which carry the PSP's own signature) is signed with a service key: "
                f"{signing.KEY_HEADER}, {signing.TIMESTAMP_HEADER}, {signing.NONCE_HEADER} and "
                f"{signing.SIGNATURE_HEADER} = hex HMAC-SHA256(secret, "
                "timestamp\\nnonce\\nMETHOD\\npath?query\\nhex sha256(body)). Amounts are integers in "
                "minor units."
            ),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "serviceKey": {"type": "apiKey", "in": "header", "name": signing.KEY_HEADER},
            },
        },
    }


def encoded() -> bytes:
    """The document as committed: sorted keys, indented, with a final newline."""
    return msgspec.json.format(msgspec.json.encode(document(), order="sorted"), indent=2) + b"\n"


if __name__ == "__main__":
    import sys

    sys.stdout.buffer.write(encoded())
