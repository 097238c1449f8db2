"""The one path every request's input takes before a handler sees it (docs/api.md, "Bad input").

For every operation, in this order, each refusal a problem with a stable code and nothing touched:
the endpoint's guard (a PSP callback's source address); the body, read up to the size limit (413
`body_too_large`); the endpoint's verify (a PSP callback's signature over the raw bytes); each
declared path, query and header parameter checked against its type (its `Param.code`, or
`Param.missing_code` when a required one is absent); then the body: none where the operation takes
none (400 `body_unexpected`), `Content-Type: application/json` (415 `unsupported_media_type`),
UTF-8 JSON nested no deeper than the decoder allows (400 `malformed_json`), of the operation's body
type with every constraint of its schema (422 `validation_failed`, the failing field in `errors`).

Only then does a handler run, so no database or Redis call ever sees a value its type refuses: no
NUL character, no id outside its pattern, no number outside its range. The same rules cover every
route the second wave adds, as long as it is declared as an `Endpoint` with typed `Param`s.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

import msgspec
from starlette.requests import Request

from pm_client.api import FieldError
from pm_gateway.endpoints import Endpoint, Param
from pm_gateway.problems import ProblemError

_DIGITS = re.compile(r"[0-9]{1,19}")
"""An integer parameter: ASCII digits only (`str.isdigit` would take `²` and `٣`), as many as a
PostgreSQL bigint has (the parameter's type then bounds the value)."""
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True)
class Inputs:
    """A request's input, decoded: what the handlers read instead of the request itself."""

    raw: bytes
    """The body exactly as sent: what a signature covers."""
    body: Any
    """The decoded body (an instance of `Endpoint.body`), or None for an operation without one."""
    params: dict[str, Any]
    """Declared parameters by `Param.key`, converted to their types; an absent optional one is its
    `Param.default`."""


async def read(
    request: Request, endpoint: Endpoint, decoder: msgspec.json.Decoder[Any] | None, limit: int
) -> Inputs:
    """Everything `endpoint` takes from `request`, checked; raises a ProblemError at the first fault."""
    if endpoint.guard is not None:
        endpoint.guard(request)
    raw = await _body(request, limit)
    if endpoint.verify is not None:
        endpoint.verify(request, raw)
    params = {p.key: read_param(request, p) for p in endpoint.params}
    return Inputs(raw=raw, body=_decode_body(request, endpoint, decoder, raw), params=params)


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and _DIGITS.fullmatch(declared) and int(declared) > limit:
        raise ProblemError(413, "body_too_large", f"the body may be at most {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ProblemError(413, "body_too_large", f"the body may be at most {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


# --- parameters ----------------------------------------------------------------------------------


def _is_integer(kind: Any) -> bool:
    if typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    return kind is int


def _raw_param(request: Request, param: Param) -> str | None:
    if param.where == "path":
        value: str | None = request.path_params.get(param.name)
        return value
    given = (request.query_params if param.where == "query" else request.headers).getlist(param.name)
    if len(given) > 1:
        raise _invalid(param, "given more than once")
    # An empty header is no header (RFC 9110 §5.5 allows empty field values; none of ours has a meaning).
    return given[0] if given and (given[0] or param.where != "header") else None


def read_param(request: Request, param: Param) -> Any:
    """`param`'s value in `request`, converted to its type; a ProblemError when it does not fit."""
    raw = _raw_param(request, param)
    if raw is None:
        if param.required:
            raise ProblemError(
                param.missing_status,
                param.missing_code,
                f"the {param.where} parameter {param.name} is required",
                errors=[FieldError(path=f"{param.where}.{param.name}", message="required")],
            )
        return param.default
    value: object = raw
    if _is_integer(param.type):
        if not _DIGITS.fullmatch(raw):
            raise _invalid(param, "must be an integer written with the digits 0-9")
        value = int(raw)
    try:
        return msgspec.convert(value, param.type)
    except msgspec.ValidationError as exc:
        raise _invalid(param, str(exc)) from None


def _invalid(param: Param, message: str) -> ProblemError:
    return ProblemError(
        param.status,
        param.code,
        f"the {param.where} parameter {param.name} is invalid: {message}",
        errors=[FieldError(path=f"{param.where}.{param.name}", message=message)],
    )


# --- the body ------------------------------------------------------------------------------------


def _decode_body(
    request: Request, endpoint: Endpoint, decoder: msgspec.json.Decoder[Any] | None, raw: bytes
) -> Any:
    if decoder is None or endpoint.body is None:
        if raw:
            raise ProblemError(400, "body_unexpected", f"{endpoint.method} {endpoint.path} takes no body")
        return None
    if not raw:
        if endpoint.body_optional:
            return msgspec.convert({}, endpoint.body)
        raise ProblemError(400, "body_missing", "a JSON body is required")
    media_type(request.headers.get("content-type"))
    return decode_json(raw, decoder)


def media_type(header: str | None) -> None:
    """Refuse (415) a body that is not declared `application/json` (a `charset` may only be UTF-8)."""
    kind, _, parameters = (header or "").partition(";")
    ok = kind.strip().lower() == JSON_MEDIA_TYPE
    for parameter in parameters.split(";") if parameters.strip() else ():
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in {"utf-8", "utf8"}:
            ok = False
    if not ok:
        raise ProblemError(
            415,
            "unsupported_media_type",
            f"the body must be sent as {JSON_MEDIA_TYPE} (got {header or 'no Content-Type'})",
        )


def decode_json(raw: bytes, decoder: msgspec.json.Decoder[Any]) -> Any:
    """`raw` decoded by `decoder`: 400 `malformed_json` or 422 `validation_failed` when it cannot be."""
    try:
        # Checked whole and first: msgspec reports invalid UTF-8 only where it decodes a string, and
        # only if no other fault (an unknown field) comes first; a C loop, microseconds per body.
        raw.decode("utf-8")
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        path, message = _split(str(exc))
        raise ProblemError(
            422, "validation_failed", str(exc), errors=[FieldError(path=path, message=message)]
        ) from None
    except msgspec.DecodeError as exc:
        raise ProblemError(400, "malformed_json", str(exc)) from None
    except UnicodeDecodeError:
        raise ProblemError(400, "malformed_json", "the body is not valid UTF-8") from None
    except RecursionError:
        raise ProblemError(400, "malformed_json", "the JSON is nested too deeply") from None


def _split(error: str) -> tuple[str, str]:
    """(path, message) of a msgspec error: "Expected `int`, got `float` - at `$.amount`"."""
    message, sep, where = error.rpartition(" - at ")
    if not sep:
        return "$", error
    return where.strip("`"), message
