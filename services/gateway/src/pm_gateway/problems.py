"""Errors as `application/problem+json` (RFC 9457), each with a stable `code` clients can branch on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgspec
from starlette.responses import Response

from pm_client.api import FieldError, Problem

MEDIA_TYPE = "application/problem+json"
_encoder = msgspec.json.Encoder()

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class ProblemError(Exception):
    """Raised anywhere in a request; answered as a problem document, and nothing is changed."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str | None = None,
        *,
        errors: Sequence[FieldError] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {detail or ''}")
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})


def response(exc: ProblemError, *, request_id: str | None = None, instance: str | None = None) -> Response:
    body = Problem(
        type=f"urn:pm:problem:{exc.code}",
        title=TITLES.get(exc.status, "Error"),
        status=exc.status,
        code=exc.code,
        detail=exc.detail,
        instance=instance,
        request_id=request_id,
        errors=exc.errors,
    )
    return Response(_encoder.encode(body), status_code=exc.status, media_type=MEDIA_TYPE, headers=exc.headers)
