"""A merchant's webhook receiver for `pm bench`: uvicorn (keep-alive; httptools when installed)
answering every POST with 204 and doing nothing else, so the benchmark measures the sender, not the
receiver.

`python -m pm_tools.bench.receiver PORT` serves on 127.0.0.1:PORT until SIGTERM. A GET answers 204 too
(the benchmark waits for that before it starts).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:  # read the whole body, as a real receiver verifying a signature would
        more = bool((await receive()).get("more_body", False))
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


def main() -> None:
    port = int(sys.argv[1])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        http="auto",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
