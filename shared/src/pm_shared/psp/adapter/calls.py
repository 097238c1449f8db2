"""How a call to a PSP ends when it brings no answer to act on, and reading again with backoff.

An answer is either what the PSP decided (the adapter acts on it), a refusal (`Refused`: a 4xx
problem; nothing was done, the PSP says why), or nothing usable (`Unavailable`: timeout, connection
error, 5xx, an unreadable body): the PSP may or may not have acted, so the caller must not
conclude; it asks again (`backoff`), or the job is delivered again later (a `RetryLater`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec

from pm_shared.errors import PMError, RetryLater


class Problem(msgspec.Struct, frozen=True, kw_only=True):
    """A PSP's `application/problem+json` body, as far as the adapters read it."""

    status: int
    code: str
    detail: str | None = None


class Refused(PMError):
    """A 4xx problem: the PSP refused the request (and says why in `code`); nothing was done."""

    def __init__(self, http_status: int, code: str, detail: str) -> None:
        super().__init__(f"{http_status} {code}: {detail}")
        self.http_status = http_status
        self.code = code
        self.detail = detail


class Unavailable(RetryLater):
    """No usable answer (timeout, connection error, 5xx, unreadable): the outcome is unknown."""


_problem = msgspec.json.Decoder(Problem)


def problem(content: bytes) -> Problem | None:
    """The problem `content` describes; None when it is not one."""
    try:
        return _problem.decode(content)
    except msgspec.DecodeError:
        return None


def refusal(http_status: int, content: bytes, text: str) -> Refused:
    """The refusal a 4xx answer stands for: the PSP's code, or `HTTP_<status>` without a problem body."""
    found = problem(content)
    if found is None:
        return Refused(http_status, f"HTTP_{http_status}", text[:200])
    return Refused(http_status, found.code, found.detail or "")


async def backoff(
    initial_s: float, max_s: float, attempts: int, *, wait_first: bool = True
) -> AsyncIterator[int]:
    """The numbers 1 to `attempts`, each after a pause (none before the first unless `wait_first`)
    that starts at `initial_s` and doubles up to `max_s`."""
    delay = initial_s
    for n in range(1, attempts + 1):
        if wait_first or n > 1:
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_s)
        yield n
