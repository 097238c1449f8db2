"""Small pieces every handler uses: its decoded input, the caller, JSON answers."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_gateway.auth import Caller
from pm_gateway.deps import Deps
from pm_gateway.inputs import Inputs

_encoder = msgspec.json.Encoder()


def deps(request: Request) -> Deps:
    found: Deps = request.state.deps
    return found


def inputs(request: Request) -> Inputs:
    """The request's input, decoded and checked before the handler was called (`pm_gateway.inputs`)."""
    found: Inputs = request.state.inputs
    return found


def target(request: Request) -> str:
    """The path and query exactly as the client sent them: what the signature covers."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string", b"")
    return (raw + b"?" + query).decode("latin-1") if query else raw.decode("latin-1")


async def caller(request: Request) -> Caller:
    """Who signed the request (401 when nobody did, validly)."""
    d = deps(request)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    return await d.auth.authenticate(request.method, target(request), headers, inputs(request).raw)


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(value), status_code=status, media_type="application/json", headers=headers
    )
