"""What an API route is: its method and path, its parameters and body, and every answer it can give.

An `Endpoint` is the contract of one operation. The gateway's routes, the decoding of every request
(`pm_gateway.inputs`) and `GET /openapi.json` are all built from the same `Endpoint`, so what the
document says is what the server enforces: each parameter's type (pattern, length, range), the body's
type, and every status with the problem `code`s it can carry (`Endpoint.problems`). A handler that
raises a problem its endpoint does not declare is a bug: `pm_gateway.app` logs and counts it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from pm_gateway.problems import ProblemError

Handler = Callable[[Request], Awaitable[Response]]
Guard = Callable[[Request], None]
Verify = Callable[[Request, bytes], None]

# The codes every signed operation may answer 401 with (pm_gateway.auth).
AUTH_CODES = (
    "auth_missing_header",
    "auth_malformed_header",
    "auth_unknown_key",
    "auth_inactive_key",
    "auth_timestamp_skew",
    "auth_expired_secret",
    "auth_bad_signature",
    "auth_replayed_nonce",
)
# Decoding a JSON body (pm_gateway.inputs): statuses and codes every operation with a body may answer.
BODY_PROBLEMS: Mapping[int, tuple[str, ...]] = {
    400: ("body_missing", "malformed_json"),
    413: ("body_too_large",),
    415: ("unsupported_media_type",),
    422: ("validation_failed",),
}
NO_BODY_PROBLEMS: Mapping[int, tuple[str, ...]] = {400: ("body_unexpected",), 413: ("body_too_large",)}
UNAVAILABLE = "unavailable"
"""PostgreSQL or Redis unreachable or out of connections (503 with Retry-After), on any operation."""


@dataclass(frozen=True)
class Param:
    """A path, query or header parameter. `type` is a msgspec type (with its `Meta` constraints): the
    value is checked against it before the handler runs, and the document shows its JSON Schema.
    A value that does not fit is a problem `status`/`code`; a required one missing is `missing_code`."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    type: Any = str
    required: bool = False
    status: int = 400
    code: str = "invalid_parameter"
    missing_code: str = "parameter_missing"
    missing_status: int = 400
    default: Any = None

    @property
    def key(self) -> str:
        """How a handler finds the value in `Inputs.params` (header names are case-insensitive)."""
        return self.name.lower() if self.where == "header" else self.name


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type | None = None
    responses: dict[int, type] = field(default_factory=dict)
    """The successful answers: status to body type."""
    problems: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """The refusals only this operation gives, status to codes; `all_problems()` adds the common ones."""
    params: tuple[Param, ...] = ()
    tag: str = "intents"
    signed: bool = True
    """Signed with a PM service key; False for the PSPs' callbacks, which carry their own signature."""
    body_optional: bool = False
    """An empty body is the body type's defaults (a rotation with the default grace period)."""
    guard: Guard | None = None
    """Checked before the body is read (a PSP callback's source address); raises a ProblemError."""
    verify: Verify | None = None
    """Checked over the raw body before it is decoded (a PSP callback's signature)."""
    on_problem: Callable[[ProblemError], None] | None = None
    """Told of every refusal (the PSP callbacks count them by outcome)."""
    alternates: tuple[str, ...] = ()
    """Media types besides JSON its successful answers come in, as text, chosen by `Accept` (a
    reconciliation report as CSV or HTML)."""

    def all_problems(self) -> dict[int, tuple[str, ...]]:
        """Every status this operation can answer with a problem, and the codes each can carry."""
        found: dict[int, list[str]] = {}

        def add(status: int, *codes: str) -> None:
            known = found.setdefault(status, [])
            known.extend(c for c in codes if c not in known)

        for status, codes in (BODY_PROBLEMS if self.body is not None else NO_BODY_PROBLEMS).items():
            add(status, *codes)
        for param in self.params:
            add(param.status, param.code)
            if param.required:
                add(param.missing_status, param.missing_code)
        if self.signed:
            add(401, *AUTH_CODES)
        for status, codes in self.problems.items():
            add(status, *codes)
        add(503, UNAVAILABLE)
        return {status: tuple(codes) for status, codes in sorted(found.items())}
