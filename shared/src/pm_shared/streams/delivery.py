"""What a stream handler is given and what it returns: `Delivery` and the two handler types."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

M = TypeVar("M")


class Delivery(msgspec.Struct, Generic[M], frozen=True, gc=False):
    """One decoded stream entry handed to a handler."""

    entry_id: str
    key: str
    message: M
    attempt: int
    """1 on first delivery; the consumer never hands over an entry past `max_deliveries`."""


BatchHandler = Callable[[Sequence[Delivery[M]]], Awaitable[Mapping[str, BaseException] | None]]
"""Handles a whole batch; returns the failures by entry id (None or empty: all succeeded)."""
MessageHandler = Callable[[Delivery[M]], Awaitable[None]]
"""Handles one entry; raising marks it failed (`pm_shared.errors` says what becomes of it)."""

RawEntry = tuple[bytes, dict[bytes, bytes]]
"""An entry as XREADGROUP and XAUTOCLAIM return it: its id and its fields."""


def raw_entries(reply: Any) -> list[RawEntry]:
    """Normalise an XREADGROUP reply (RESP2 list or RESP3 map) to one list of entries."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [entry for batches in reply.values() for batch in batches for entry in batch]
    return [entry for _, batch in reply for entry in batch]
