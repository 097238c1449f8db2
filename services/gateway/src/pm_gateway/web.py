"""Small pieces every handler uses: the body (bounded), the caller, JSON answers."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import FieldError
from pm_gateway.auth import Caller
from pm_gateway.deps import Deps
from pm_gateway.problems import ProblemError

_encoder = msgspec.json.Encoder()


def deps(request: Request) -> Deps:
    found: Deps = request.state.deps
    return found


def target(request: Request) -> str:
    """The path and query exactly as the client sent them: what the signature covers."""
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    query: bytes = request.scope.get("query_string", b"")
    return (raw + b"?" + query).decode("latin-1") if query else raw.decode("latin-1")


async def body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ProblemError(413, "body_too_large", f"the body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "body_too_large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def caller(request: Request, payload: bytes) -> Caller:
    d = deps(request)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    return await d.auth.authenticate(request.method, target(request), headers, payload)


def decode(payload: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    if not payload:
        raise ProblemError(400, "body_missing", "a JSON body is required")
    try:
        return decoder.decode(payload)
    except msgspec.ValidationError as exc:
        path, message = _split(str(exc))
        raise ProblemError(
            422, "validation_failed", str(exc), errors=[FieldError(path=path, message=message)]
        ) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, "malformed_json", str(exc)) from None


def _split(error: str) -> tuple[str, str]:
    """(path, message) of a msgspec error: "Expected `int`, got `float` - at `$.amount`"."""
    message, sep, where = error.rpartition(" - at ")
    if not sep:
        return "$", error
    return where.strip("`"), message


def json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        _encoder.encode(value), status_code=status, media_type="application/json", headers=headers
    )
