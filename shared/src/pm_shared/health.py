"""A small HTTP endpoint every service runs on its own port: `/metrics`, `/healthz`, `/readyz`.

Services other than the gateway have no web framework, and need none for three GET routes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)

ReadyCheck = Callable[[], Awaitable[bool]]
MAX_REQUEST_BYTES = 8192


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _route(path: str, ready: ReadyCheck) -> bytes:
    if path == "/healthz":
        return _response("200 OK", b"ok\n")
    if path == "/readyz":
        try:
            is_ready = await ready()
        except Exception as exc:
            log.warning("readiness check failed: %s", exc)
            is_ready = False
        return (
            _response("200 OK", b"ready\n")
            if is_ready
            else _response("503 Service Unavailable", b"not ready\n")
        )
    if path == "/metrics":
        return _response("200 OK", generate_latest(), CONTENT_TYPE_LATEST)
    return _response("404 Not Found", b"not found\n")


def _handler(ready: ReadyCheck) -> Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                reply = _response("405 Method Not Allowed", b"method not allowed\n")
            else:
                reply = await _route(path, ready)
            writer.write(reply)
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, OSError):
            pass
        finally:
            writer.close()

    return handle


@asynccontextmanager
async def serve(host: str, port: int, ready: ReadyCheck) -> AsyncIterator[asyncio.Server]:
    """Serve the health endpoints on `host:port` for the duration of the block."""
    server = await asyncio.start_server(_handler(ready), host, port, limit=MAX_REQUEST_BYTES)
    log.info("health and metrics on http://%s:%d (/healthz /readyz /metrics)", host, port)
    try:
        yield server
    finally:
        server.close()
        await server.wait_closed()
