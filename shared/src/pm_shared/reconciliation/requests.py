"""Asking the reconciler for a sweep now (`POST /v1/admin/reconciliation/runs`, `pm recon run`).

A request is pushed on the Redis list `REQUESTS_KEY`; a reconciler replica pops it and runs the sweep
as run `<window>@<request id>` of `pm.reconciliation_run`, where the asker can follow it. A request
made while no reconciler runs waits in the list.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import msgspec
from redis.asyncio import Redis

REQUESTS_KEY = "pm:reconciler:requests"
SWEEPS = ("verify", "orphans", "projection", "totals", "settlement")
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RunRequestError(ValueError):
    """A sweep or period the reconciler does not have."""


class RunRequest(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    id: str
    sweep: str
    day: str
    """The UTC day to sweep (the state sweeps look at the state now, whatever the day)."""
    requested_by: str

    @property
    def period(self) -> str:
        """The run's period in `pm.reconciliation_run`."""
        return f"{day_window_key(self.day)}@{self.id}"


def day_window_key(day: str) -> str:
    return f"{day}T00:00:00Z/86400"


def request(sweep: str, day: str | None, requested_by: str) -> RunRequest:
    """A checked request (RunRequestError names what is wrong); `day` defaults to today (UTC)."""
    if sweep not in SWEEPS:
        raise RunRequestError(f"unknown sweep {sweep!r}; sweeps: {', '.join(SWEEPS)}")
    today = datetime.now(UTC).date()
    wanted = day or today.isoformat()
    if not _DAY.match(wanted):
        raise RunRequestError(f"day must be YYYY-MM-DD, got {wanted!r}")
    try:
        parsed = datetime.strptime(wanted, "%Y-%m-%d").date()
    except ValueError:
        raise RunRequestError(f"no such day: {wanted!r}") from None
    if parsed > today or parsed < today - timedelta(days=3_660):
        raise RunRequestError(f"day {wanted} is in the future or more than ten years ago")
    return RunRequest(id=uuid.uuid4().hex[:12], sweep=sweep, day=wanted, requested_by=requested_by)


async def enqueue(redis: Redis, run: RunRequest) -> None:
    await redis.rpush(REQUESTS_KEY, msgspec.json.encode(run))


_decoder = msgspec.json.Decoder(RunRequest)


def decode(raw: bytes | str) -> RunRequest:
    return _decoder.decode(raw.encode() if isinstance(raw, str) else raw)
