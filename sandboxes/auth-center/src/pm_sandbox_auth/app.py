"""The Auth Center sandbox's Starlette app.

| route | what |
|---|---|
| `GET /healthz` | `{"status": "ok"}` |
| `POST /tokens {"userId", "ttlS"}` | a token for that user (what a sign-in would give the app) |
| `GET /verify` | for `auth_request`: a valid `Authorization: Bearer <token>` → 204, `X-User-Id`; else 401 |

`/verify` answers only 204 or 401: nginx's `auth_request` treats any other status as an error (500).
"""

from __future__ import annotations

import time
from typing import Annotated

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pm_sandbox_auth import tokens
from pm_sandbox_auth.settings import Settings

USER_HEADER = "X-User-Id"


class TokenRequest(msgspec.Struct, frozen=True, kw_only=True, rename="camel", forbid_unknown_fields=True):
    user_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(?!\n)$")]
    ttl_s: Annotated[int, msgspec.Meta(ge=1)] = 3_600


_token_request = msgspec.json.Decoder(TokenRequest)


def _problem(status: int, code: str, detail: str) -> Response:
    body = {
        "type": f"urn:pm:problem:{code}",
        "title": "Error",
        "status": status,
        "code": code,
        "detail": detail,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def create_app(settings: Settings) -> Starlette:
    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def issue(request: Request) -> Response:
        try:
            wanted = _token_request.decode(await request.body())
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return _problem(422, "invalid_request", str(exc))
        expires = int(time.time()) + min(wanted.ttl_s, settings.max_ttl_s)
        token = tokens.issue(settings.secret, wanted.user_id, expires)
        return JSONResponse({"token": token, "userId": wanted.user_id, "expiresAt": expires}, status_code=201)

    async def verify(request: Request) -> Response:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        user = (
            tokens.verify(settings.secret, token.strip(), time.time()) if scheme.lower() == "bearer" else None
        )
        if user is None:
            return Response(status_code=401, headers={"WWW-Authenticate": 'Bearer realm="pm"'})
        return Response(status_code=204, headers={USER_HEADER: user})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/tokens", issue, methods=["POST"]),
            Route("/verify", verify, methods=["GET"]),
        ]
    )
