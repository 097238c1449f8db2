"""The gateway's Starlette application: the API (docs/api.md), health, readiness and metrics.

Every API handler runs inside `_endpoint`, which gives the request an id (echoed in
`X-Request-Id`), decodes and checks its input (`pm_gateway.inputs`) before the handler runs, turns
`ProblemError` (and anything unexpected, as a 500) into a problem document, counts and times the
request by route template and writes the access log. Each path is one route (`_path`): a method it
does not take is 405 with `Allow`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypedDict

import asyncpg
import msgspec
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from pm_gateway import inputs, openapi, problems, routes
from pm_gateway.auth import Authenticator
from pm_gateway.deps import Deps
from pm_gateway.endpoints import UNAVAILABLE as UNAVAILABLE_CODE
from pm_gateway.endpoints import Endpoint, Handler
from pm_gateway.events import EventWaiters
from pm_gateway.group_commit import GroupCommit
from pm_gateway.problems import ProblemError
from pm_gateway.settings import Settings
from pm_shared import db
from pm_shared.keys.crypto import Cipher
from pm_shared.ledger import open_ledger
from pm_shared.outbox import Marks
from pm_shared.runtime import TaskEnded
from pm_shared.streams import Publisher
from pm_shared.streams.connection import connect
from pm_shared.streams.errors import StreamMissingError

log = logging.getLogger(__name__)
access = logging.getLogger("pm_gateway.access")

REQUESTS = Counter(
    "pm_gateway_requests_total", "API requests by route and status.", ["method", "route", "status"]
)
LATENCY = Histogram(
    "pm_gateway_request_seconds",
    "API request latency by route.",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
UNDECLARED = Counter(
    "pm_gateway_undeclared_problems_total",
    "Problems answered that the operation's contract (GET /openapi.json) does not list: a bug.",
    ["method", "route", "status", "code"],
)
REQUEST_ID_HEADER = "X-Request-Id"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


FailureHandler = Callable[[BaseException], None]


class State(TypedDict):
    deps: Deps
    redis: Redis


# Failures of a backing service rather than of the request: answered 503 with Retry-After.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # includes redis-py's MaxConnectionsError
    RedisTimeoutError,
    *db.CONNECTION_LOST,  # PostgreSQL shutting down, restarting, unreachable (OSError included)
    asyncpg.TooManyConnectionsError,
    asyncpg.InterfaceError,
    StreamMissingError,  # a stream not provisioned (yet): the services that provision it are starting
)


def _request_id(request: Request) -> str:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    return given if _REQUEST_ID.match(given) else secrets.token_hex(12)


def _problem(request: Request, exc: ProblemError, request_id: str) -> Response:
    response = problems.response(exc, request_id=request_id, instance=request.url.path)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _declared(endpoint: Endpoint) -> Callable[[ProblemError], bool]:
    declared = endpoint.all_problems()

    def check(exc: ProblemError) -> bool:
        if exc.code in declared.get(exc.status, ()):
            return True
        # A handler answered with a problem the contract does not list: the client gets it anyway
        # (it is still a refusal that changed nothing), but the document is wrong; tests fail on it.
        UNDECLARED.labels(endpoint.method, endpoint.path, str(exc.status), exc.code).inc()
        log.error(
            "%s %s answered %d %s, which its contract does not declare",
            endpoint.method,
            endpoint.path,
            exc.status,
            exc.code,
        )
        return False

    return check


def _endpoint(endpoint: Endpoint, max_body_bytes: int) -> Handler:
    method, template = endpoint.method, endpoint.path
    decoder: msgspec.json.Decoder[Any] | None = None
    if endpoint.body is not None:
        decoder = msgspec.json.Decoder(endpoint.body)
    declared = _declared(endpoint)

    async def handle(request: Request) -> Response:
        started = time.perf_counter()
        request_id = _request_id(request)
        try:
            try:
                request.state.inputs = await inputs.read(request, endpoint, decoder, max_body_bytes)
            except ProblemError as exc:
                if endpoint.on_problem is not None:
                    endpoint.on_problem(exc)
                raise
            response = await endpoint.handler(request)
        except ProblemError as exc:
            declared(exc)
            response = problems.response(exc, request_id=request_id, instance=request.url.path)
        except UNAVAILABLE as exc:
            # Redis or PostgreSQL unreachable or out of connections: nothing was committed that a
            # retry (with the same Idempotency-Key) would not find, so the client may simply retry.
            log.warning(
                "%s %s (request %s): backing service unavailable: %r", method, template, request_id, exc
            )
            response = problems.response(
                ProblemError(
                    503,
                    UNAVAILABLE_CODE,
                    "a backing service is unavailable or overloaded; retry later",
                    headers={"Retry-After": "1"},
                ),
                request_id=request_id,
                instance=request.url.path,
            )
        except Exception:
            log.exception("unexpected error in %s %s (request %s)", method, template, request_id)
            response = problems.response(
                ProblemError(500, "internal_error", "an unexpected error; nothing was accepted"),
                request_id=request_id,
                instance=request.url.path,
            )
        response.headers[REQUEST_ID_HEADER] = request_id
        elapsed = time.perf_counter() - started
        REQUESTS.labels(method, template, str(response.status_code)).inc()
        LATENCY.labels(method, template).observe(elapsed)
        access.info(
            "%s %s %d %.1fms",
            method,
            request.url.path,
            response.status_code,
            elapsed * 1000,
            extra={"request_id": request_id, "key_id": request.headers.get("x-pm-key")},
        )
        return response

    return handle


class _Path:
    """The ASGI app of one path, whatever its methods: any other method is 405 with `Allow` (RFC 9110
    §15.5.6) listing every method of the path, not just those of the first route Starlette matched.
    An object rather than a function, so that Starlette passes every method on to it."""

    def __init__(self, endpoints: list[Endpoint], max_body_bytes: int) -> None:
        self.handlers = {e.method: _endpoint(e, max_body_bytes) for e in endpoints}
        self.allow = ", ".join(sorted(self.handlers))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        handler = self.handlers.get(request.method)
        if handler is not None:
            response = await handler(request)
        else:
            refused = ProblemError(
                405,
                "method_not_allowed",
                f"{request.method} is not allowed here; allowed: {self.allow}",
                headers={"Allow": self.allow},
            )
            response = _problem(request, refused, _request_id(request))
        await response(scope, receive, send)


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


async def readyz(request: Request) -> Response:
    redis: Redis = request.state.redis
    try:
        await redis.ping()
        async with request.state.deps.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
    except Exception as exc:
        return problems.response(ProblemError(503, "not_ready", f"{type(exc).__name__}: {exc}"))
    return PlainTextResponse("ready\n")


async def metrics(request: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)


async def openapi_json(request: Request) -> Response:
    return Response(openapi.encoded(), media_type="application/json")


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such path; a method the health routes do not take), as problems."""
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    refused = ProblemError(exc.status_code, code, str(exc.detail), headers=exc.headers)
    return _problem(request, refused, _request_id(request))


def _background(
    name: str, work: Coroutine[Any, Any, None], stop: asyncio.Event, on_failure: FailureHandler | None
) -> asyncio.Task[None]:
    """Run `work` beside the app until `stop`. If it raises, or ends before `stop`, the gateway cannot
    serve as it should (`Prefer: wait` would hang; marks would pile up): `on_failure` hears of it
    (main.py ends the process with it), or, with no handler, it is logged as critical."""
    task = asyncio.create_task(work, name=name)

    def done(finished: asyncio.Task[None]) -> None:
        if finished.cancelled() or (finished.exception() is None and stop.is_set()):
            return
        exc = finished.exception() or TaskEnded(f"{name} ended while the gateway was not stopping")
        exc.add_note(f"(in the gateway's task {name!r})")
        if on_failure is None:
            log.critical("the gateway's %s failed", name, exc_info=exc)
        else:
            on_failure(exc)

    task.add_done_callback(done)
    return task


def create_app(settings: Settings, *, on_background_failure: FailureHandler | None = None) -> Starlette:
    """The app; its lifespan opens the connections and runs the background tasks (`_background`)."""
    cipher = Cipher.from_setting(settings.key_encryption_key)  # a configuration error stops the start

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = connect(settings.redis_url, name="gateway")
        reader = connect(settings.redis_url, blocking_reads=True, name="gateway-events")
        # The gateway leaves no session state on a connection (single statements; transactions only as
        # context managers), so released connections skip asyncpg's reset round trip.
        pool = await db.create_pool(
            settings.database_url,
            max_size=settings.pool_max_size,
            application_name="pm-gateway",
            reset_on_release=False,
        )
        ledger = await open_ledger(settings.ledger(), readonly=True)
        stop = asyncio.Event()
        deps = Deps(
            settings=settings,
            pool=pool,
            redis=redis,
            publisher=Publisher(
                redis,
                partitions=settings.stream_partitions,
                maxlen=settings.stream_maxlen,
                threshold=settings.backpressure_threshold,
                coalesce_adds=True,  # one add per request, many requests in flight
            ),
            auth=Authenticator(pool, redis, cipher, cache_s=settings.key_cache_s),
            waiters=EventWaiters(reader, settings.stream_partitions),
            ledger=ledger,
            marks=Marks(pool),
            intake=GroupCommit(pool),
        )
        background = [
            _background("events follower", deps.waiters.run(stop), stop, on_background_failure),
            _background("outbox marks", deps.marks.run(stop), stop, on_background_failure),
        ]
        try:
            yield {"deps": deps, "redis": redis}
        finally:
            stop.set()
            deps.marks.wake()
            background[0].cancel()  # the events follower only reads; its blocking read need not finish
            await asyncio.gather(*background, return_exceptions=True)
            await ledger.close()
            await pool.close()
            await reader.aclose()
            await redis.aclose()

    by_path: dict[str, list[Endpoint]] = {}
    for endpoint in routes.ENDPOINTS:
        by_path.setdefault(endpoint.path, []).append(endpoint)
    api = [Route(path, _Path(group, settings.max_body_bytes)) for path, group in by_path.items()]
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
            Route("/openapi.json", openapi_json, methods=["GET"]),
            *api,
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )
