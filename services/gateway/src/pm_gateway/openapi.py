"""`GET /openapi.json`: OpenAPI 3.1 built from the route list and the msgspec types, never by hand.

`python -m pm_gateway.openapi` prints it; the committed copy (services/gateway/openapi.json) is
checked against it by the tests, so it cannot drift either.
"""

from __future__ import annotations

from typing import Any

import msgspec

from pm_client import signing
from pm_client.api import INTENT_TYPES, MINIAPP_TYPES, Problem
from pm_gateway import shapes
from pm_gateway.endpoints import Endpoint, Param
from pm_gateway.problems import MEDIA_TYPE
from pm_gateway.routes import ENDPOINTS

VERSION = "1.0.0"


def _param(param: Param) -> dict[str, Any]:
    schema = msgspec.json.schema(param.type)
    if param.default is not None:
        schema["default"] = param.default
    return {
        "name": param.name,
        "in": param.where,
        "required": param.required,
        "description": param.description,
        "schema": schema,
    }


def _problem(status: int, codes: tuple[str, ...], problem_ref: dict[str, Any]) -> dict[str, Any]:
    """A refusal: the problem document, its `code` one of those this operation can give at `status`."""
    return {
        "description": "A problem document; `code` is one of: " + ", ".join(f"`{c}`" for c in codes) + ".",
        "content": {
            MEDIA_TYPE: {
                "schema": {
                    "allOf": [
                        problem_ref,
                        {"properties": {"status": {"const": status}, "code": {"enum": list(codes)}}},
                    ]
                }
            }
        },
    }


def _operation(endpoint: Endpoint, refs: dict[int, dict[str, Any]]) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": endpoint.summary,
        "operationId": f"{endpoint.method.lower()}_{endpoint.path.strip('/').replace('/', '_')}".replace(
            "{", ""
        ).replace("}", ""),
        "tags": [endpoint.tag],
        # An empty list: no PM service key (a PSP's callback carries the PSP's own signature).
        "security": [{"serviceKey": []}] if endpoint.signed else [],
        "parameters": [_param(p) for p in endpoint.params],
        "responses": {},
    }
    if endpoint.body is not None:
        operation["requestBody"] = {
            "required": not endpoint.body_optional,
            "content": {"application/json": {"schema": refs[id(endpoint.body)]}},
        }
    for status, body in endpoint.responses.items():
        operation["responses"][str(status)] = {
            "description": "OK" if not endpoint.alternates else "OK, in the media type `Accept` prefers.",
            "content": {
                "application/json": {"schema": refs[id(body)]},
                **{media: {"schema": {"type": "string"}} for media in endpoint.alternates},
            },
        }
    for status, codes in endpoint.all_problems().items():
        operation["responses"][str(status)] = _problem(status, codes, refs[id(Problem)])
    return operation


def _ref(party: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{party.__name__}"}


def _party_rules(components: dict[str, Any]) -> None:
    """The cross-field rules JSON Schema can state, added where msgspec cannot put them: which party
    kinds each intent type takes (`shapes.allowed_pairs`), that MINIAPP_* (only) carry a
    `miniappId`, FX_EXCHANGE (only) a `quoteId` and REFUND (only) an `originalIntentId`, and a
    BILLER payee's references. What it cannot state (a user paying themselves, a Thai QR that must
    parse) the descriptions say."""
    # One flat anyOf of (type, from, to) combinations: nested if/then per type is the same statement,
    # but too much for schemathesis to generate from once there are six types.
    for name, quoted in (("CreateIntent", True), ("FeeQuote", False)):
        components[name]["allOf"] = [{"anyOf": [_combination(*c, quoted=quoted) for c in _combinations()]}]
    # A quote names exactly one amount: what is sold, or what is bought.
    components["CreateQuote"]["oneOf"] = [
        {"properties": {side: {"required": ["amount"], "properties": {"amount": {"type": "integer"}}}}}
        for side in ("sell", "buy")
    ]
    components["PromptPayParty"].update(
        {
            "if": {"properties": {"proxyType": {"const": "BILLER"}}, "required": ["proxyType"]},
            "then": {"required": ["ref1"], "properties": {"ref1": {"type": "string", "minLength": 1}}},
            "else": {"properties": {"ref1": {"maxLength": 0}, "ref2": {"maxLength": 0}}},
        }
    )


def _combinations() -> list[tuple[str, type, type]]:
    return [(t, source, target) for t in INTENT_TYPES for source, target in shapes.allowed_pairs(t)]


def _combination(intent_type: str, source: type, target: type, *, quoted: bool) -> dict[str, Any]:
    """One allowed (type, from, to), with the fields that type alone takes: a MINIAPP_*'s `miniappId`;
    an FX_EXCHANGE's `quoteId` and a REFUND's `originalIntentId` (`quoted`: an intent, not a dry run,
    which names neither)."""
    properties: dict[str, Any] = {"type": {"const": intent_type}, "from": _ref(source), "to": _ref(target)}
    required = ["type"]
    properties["miniappId"] = {"type": "string"} if intent_type in MINIAPP_TYPES else {"type": "null"}
    if intent_type in MINIAPP_TYPES:
        required.append("miniappId")
    if quoted:
        fx = intent_type == "FX_EXCHANGE"
        properties["quoteId"] = {"type": "string", "format": "uuid"} if fx else {"type": "null"}
        if fx:
            required.append("quoteId")
        refund = intent_type == "REFUND"
        properties["originalIntentId"] = {"type": "string", "format": "uuid"} if refund else {"type": "null"}
        if refund:
            required.append("originalIntentId")
    return {"properties": properties, "required": required}


def document() -> dict[str, Any]:
    types: list[Any] = [Problem]
    for endpoint in ENDPOINTS:
        if endpoint.body is not None:
            types.append(endpoint.body)
        types.extend(endpoint.responses.values())
    schemas, components = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    refs = dict(zip(map(id, types), schemas, strict=True))
    _party_rules(components)
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = _operation(endpoint, refs)
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
                "minor units. Every input is checked before anything is read or written: a refusal is "
                "an application/problem+json document whose `code` is listed under each operation's "
                "status. A method a path does not take is 405 with `Allow`; a JSON body must be sent "
                "as application/json (415 otherwise); an operation without a body refuses one (400)."
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
