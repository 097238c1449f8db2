"""The gateway's Starlette application: health, readiness and metrics.

The intake, read and admin APIs are not in this build; every other path answers 404 as a
problem document, so no client is led to believe a request was accepted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import TypedDict

import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pm_gateway.settings import Settings
from pm_shared.streams.connection import connect


class State(TypedDict):
    redis: Redis


def problem(status: int, code: str, title: str, detail: str | None = None) -> Response:
    """An RFC 9457 problem document with PM's stable `code`."""
    body = {"type": "about:blank", "title": title, "status": status, "code": code}
    if detail:
        body["detail"] = detail
    return Response(msgspec.json.encode(body), status_code=status, media_type="application/problem+json")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    redis: Redis = request.state.redis
    try:
        await redis.ping()
    except Exception as exc:
        return problem(503, "NOT_READY", "Service Unavailable", f"redis: {exc}")
    return PlainTextResponse("ready\n")


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "HTTP_ERROR")
    return problem(exc.status_code, code, str(exc.detail))


def create_app(settings: Settings) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = connect(settings.redis_url, name="gateway")
        try:
            yield {"redis": redis}
        finally:
            await redis.aclose()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
