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
    awaits_payer: bool = False
    """The intent now waits for its payer, who has something to do (`Intent.payment`: pay a QR)."""


class LedgerAccount(msgspec.Struct, frozen=True, kw_only=True):
    """A TigerBeetle account to open, field for field (u128 fields are JSON integers)."""

    id: int
    ledger: int
    code: int
    flags: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0


class LedgerTransfer(msgspec.Struct, frozen=True, kw_only=True):
    """A TigerBeetle transfer, field for field (u128 fields are JSON integers)."""

    id: int
    debit_account_id: int = 0
    credit_account_id: int = 0
    amount: int = 0
    pending_id: int = 0
    user_data_128: int = 0
    user_data_64: int = 0
    user_data_32: int = 0
    timeout: int = 0
    ledger: int = 0
    code: int = 0
    flags: int = 0


class LedgerCommand(Message, frozen=True, kw_only=True, tag="ledger.command"):
    """One intent step's ledger work (`pm:ledger:commands`): accounts to open, then transfers.

    The transfers are either independent or one linked chain; the writer never splits a command
    across ledger requests, so a chain is always applied whole or not at all.
    """

    step: str
    accounts: list[LedgerAccount] = []
    transfers: list[LedgerTransfer] = []


class LedgerEventResult(msgspec.Struct, frozen=True, kw_only=True):
    """The ledger's answer to one event: its status name (`CREATED`, `EXCEEDS_CREDITS`, …)."""

    id: int
    status: str
    timestamp: int
    first_failure: str | None = None
    """With `ID_ALREADY_FAILED` (a retry of a transfer that failed transiently before, whose answer
    was lost): the transient status it most likely failed with, inferred from the accounts (and the
    pending transfer) as they are now — the ledger keeps no reason for a burned id. None when nothing
    explains it."""


class LedgerResult(Message, frozen=True, kw_only=True, tag="ledger.result"):
    """The ledger's answer to one command (`pm:ledger:results`), in the command's event order."""

    command_id: str
    """The command's message id."""
    step: str
    ok: bool
    """Every event was created, or already existed exactly as sent (a retry)."""
    accounts: list[LedgerEventResult] = []
    transfers: list[LedgerEventResult] = []
    error: str | None = None
    """Why the command could not be submitted at all (it breaks the rules of a command)."""


class PspJob(Message, frozen=True, kw_only=True, tag="psp.job"):
    """Work for a PSP adapter (`pm:psp:<psp>:jobs`): move `amount` to `target` through `psp`.

    `idempotency_key` is chosen by the orchestrator before the first attempt (`psp_key`) and sent
    unchanged on every retry (and on a DLQ replay): the PSP makes at most one payment per key.
    For a payout `target` is the intent's payee (a PromptPay proxy or biller, or a scanned Thai QR
    in `payload`); for a collect it is the wallet owner being topped up (the PSP is told the amount).
    """

    psp: str
    """`ipps` or `qp`."""
    action: str
    """`payout` (IPPS) or `collect` (QP)."""
    amount: MinorUnits
    currency: CurrencyCode
    target: Party
    idempotency_key: str
    purpose: str | None = None
    """Free text the PSP may show the payer (a collect's payment purpose)."""


def psp_key(intent_id: str, step: str) -> str:
    """The idempotency key of an intent's PSP step: `<intent id>.<step>`.

    Letters, digits, `-`, `_` and `.` only, at most 64 characters, so every PSP accepts it (QP's
    `order` allows no more); the intent id can be read back from it (`intent_of_psp_key`).
    """
    return f"{intent_id}.{step}"


def intent_of_psp_key(key: str) -> str | None:
    """The intent id a `psp_key` names, or None when `key` is not one."""
    head, dot, _ = key.partition(".")
    if not dot:
        return None
    try:
        return str(uuid.UUID(head))
    except ValueError:
        return None


class PspResult(Message, frozen=True, kw_only=True, tag="psp.result"):
    """An adapter's answer to one job (`pm:psp:results`).

    `SUCCEEDED` and `FAILED` are final (the PSP said so); `UNKNOWN` is not: the PSP may or may not
    have acted, the adapter keeps polling and a final result for the same job follows. `PENDING`
    (a collect) says the PSP is waiting for the payer: `payment_link` is what to show them (the SBP
    `qr.nspk.ru` link), valid until `expires_at`; a final result follows. A repeated final result
    carries the same `message_id`.
    """

    psp: str
    job_id: str
    """The job's message id."""
    status: str
    """`SUCCEEDED`, `FAILED`, `UNKNOWN` or `PENDING`."""
    psp_reference: str | None = None
    """The PSP's id of the transfer (IPPS) or QR (QP), when it made one."""
    failure_code: str | None = None
    """The PSP's code on `FAILED` (`INSUFFICIENT_LIQUIDITY`, `PROXY_NOT_FOUND`, `EXPIRED`, …)."""
    detail: str | None = None
    payment_link: str | None = None
    expires_at: datetime | None = None


class PspHint(Message, frozen=True, kw_only=True, tag="psp.hint"):
    """A PSP's callback, verified by the gateway and passed on to the adapter (`pm:psp:<psp>:hints`).

    Only a hint: the adapter reads the PSP's status itself before any final transition, so a forged,
    stale or reordered callback can at most cause one extra status read. `intent_id` is the one
    `idempotency_key` names, or empty when the callback names none.
    """

    psp: str
    idempotency_key: str | None = None
    """Our key as the callback echoes it (IPPS `idempotency_key`, QP `order`)."""
    psp_reference: str | None = None
    """The PSP's id (IPPS transfer id, QP QR id)."""
    claimed_status: str | None = None
    """The status the callback claims (never acted on as such)."""
    event_id: str | None = None
    refund_id: str | None = None
    """The PSP's id of a refund the callback announces (a payout sent back), confirmed by the adapter
    with the PSP's refund status before anything is credited."""


AnyMessage: TypeAlias = (
    IntentSubmitted | IntentStateChanged | LedgerCommand | LedgerResult | PspJob | PspResult | PspHint
)
