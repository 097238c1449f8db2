"""The benchmark's bare endpoint: an unsigned `POST /v1/intents` doing only the gateway's XADD.

The baseline the gateway's intake is measured against (`pm_tools.bench.gateway`): the same JSON
body decoded with msgspec into `CreateIntent`, the same `IntentSubmitted` message, the same single
XADD through `Publisher.publish` onto `pm:intents`, and a 202 with a small JSON body; no signature,
no database, no idempotency. It runs under uvicorn as the gateway does (one worker, the asyncio
loop of `asyncio.run`, `log_config=None`, `access_log=False`, the fleet's GC settings).

    python -m pm_tools.bench.bare_app [--port 8099] [--redis-url URL] [--maxlen N]

`--port` defaults to `PM_BENCH_BARE_PORT`, `--redis-url` to `PM_REDIS_URL`, `--maxlen` to
`PM_STREAM_MAXLEN` (else 10,000), so that `pm_tools.processes` starts it as it starts any member.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TypedDict

import msgspec
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from pm_client.api import CreateIntent, Party
from pm_gateway.main import http_config
from pm_shared import messages
from pm_shared.fleet import Member
from pm_shared.runtime import tune_gc
from pm_shared.streams import Publisher, connect
from pm_shared.streams.names import INTENTS

MEMBER = Member("bare endpoint", __name__, "BENCH_BARE_", 8099, kind="sandbox")
"""How the launcher starts it: a stand-in, as a sandbox is, and no member of the fleet's roster."""

_request = msgspec.json.Decoder(CreateIntent)
_encoder = msgspec.json.Encoder()


class Accepted(msgspec.Struct, kw_only=True):
    id: str
    status: str = "CREATED"


class State(TypedDict):
    publisher: Publisher


def _message_party(party: Party) -> messages.Party:
    fields = msgspec.structs.asdict(party)
    return messages.Party(kind=type(party).__struct_config__.tag, **fields)  # type: ignore[arg-type]


async def create(request: Request) -> Response:
    try:
        r = _request.decode(await request.body())
    except msgspec.DecodeError as exc:
        return Response(_encoder.encode({"error": str(exc)}), 400, media_type="application/json")
    intent_id = str(uuid.uuid4())
    message = messages.IntentSubmitted(
        intent_id=intent_id,
        message_id=f"{intent_id}:submitted",
        produced_at=messages.now(),
        type=r.type,
        amount=r.amount,
        currency=r.currency,
        source=_message_party(r.from_),
        target=_message_party(r.to),
        key_id="bench-bare",
        from_name=r.from_name,
        to_name=r.to_name,
        comment=r.comment,
        requires_monitoring=r.requires_monitoring,
        metadata=r.metadata,
    )
    publisher: Publisher = request.state.publisher
    await publisher.publish(INTENTS, message)
    return Response(_encoder.encode(Accepted(id=intent_id)), 202, media_type="application/json")


async def healthz(request: Request) -> Response:
    return PlainTextResponse("ok\n")


def create_app(redis_url: str, maxlen: int) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[State]:
        redis = connect(redis_url, name="pm-bench-bare")
        try:
            yield {"publisher": Publisher(redis, maxlen=maxlen)}
        finally:
            await redis.aclose()

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/v1/intents", create, methods=["POST"]),
        ],
        lifespan=lifespan,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pm_tools.bench.bare_app", description=__doc__)
    port = os.environ.get(MEMBER.port_variable)
    parser.add_argument("--port", type=int, required=port is None, default=port)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--redis-url", default=os.environ.get("PM_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--maxlen", type=int, default=int(os.environ.get("PM_STREAM_MAXLEN", "10000")))
    args = parser.parse_args(argv)
    tune_gc()
    # Served as the gateway is, so that the two differ only in what the gateway does per request.
    server = uvicorn.Server(http_config(create_app(args.redis_url, args.maxlen), args.host, args.port))
    asyncio.run(server.serve())


if __name__ == "__main__":
    main()
