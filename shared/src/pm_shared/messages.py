"""Every message that crosses a stream: frozen, tagged msgspec Structs, defined once.

Evolution policy (a message may sit in a stream, a DLQ or the outbox while a newer or older
version of a service reads it):
- a new field always has a default, so an older producer's message still decodes;
- an existing field never changes its name, type or meaning; retire it by leaving it in place;
- a tag is never reused, not even for a deleted message type; a changed meaning gets a new tag;
- consumers ignore fields they do not know (msgspec's default), so a newer producer is harmless.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, TypeAlias

import msgspec

MinorUnits = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


def now() -> datetime:
    """The production time stamped on a message: timezone-aware UTC."""
    return datetime.now(UTC)


def new_message_id() -> str:
    """A fresh message id; producers that retry must reuse theirs rather than call this again."""
    return uuid.uuid4().hex


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="kind"):
    """Fields every message carries."""

    intent_id: str
    message_id: str
    """Idempotency key: a consumer that has seen it before must not act twice."""
    produced_at: datetime


class Party(msgspec.Struct, frozen=True, kw_only=True, rename="camel"):
    """One side of an intent: a user, the operator, a PSP, or a payout target."""

    kind: str
    id: str | None = None
    proxy_type: str | None = None
    proxy_value: str | None = None
    ref1: str | None = None
    ref2: str | None = None
    payload: str | None = None


class IntentSubmitted(Message, frozen=True, kw_only=True, tag="intent.submitted"):
    """The gateway accepted an intent (202); the orchestrator takes it from here (`pm:intents`)."""

    type: str
    amount: MinorUnits
    currency: CurrencyCode
    source: Party
    target: Party
    key_id: str
    from_name: str | None = None
    to_name: str | None = None
    comment: str | None = None
    requires_monitoring: bool = False
    metadata: dict[str, str] = {}


class IntentStateChanged(Message, frozen=True, kw_only=True, tag="intent.state_changed"):
    """An intent moved from one state to another (`pm:events`)."""

    state: str
    previous: str | None = None
    failure_code: str | None = None
    reason: str | None = None


AnyMessage: TypeAlias = IntentSubmitted | IntentStateChanged
