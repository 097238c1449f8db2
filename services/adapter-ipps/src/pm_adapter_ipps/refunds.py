"""Refund notifications: a settled PromptPay payout the receiving bank sent back, credited back to the
payer's wallet exactly once per IPPS refund id (docs/psp.md#refund-notifications).

A `transfer.returned` callback reaches this adapter as a `PspHint` with `refund_id` (the gateway has
checked its source, signature and shape). The hint is only the occasion: per refund id,

1. the notification is recorded (`pm.psp_refund`, RECEIVED; a repeat is counted) and committed;
2. IPPS's refund status API is asked (the only truth). IPPS away: the hint raises to be delivered
   again, and the sweep retries RECEIVED refunds left alone `idle_s`, so none is lost;
3. a COMPLETED refund of a transfer that is one of our SETTLED `PROMPTPAY_WITHDRAWAL`s (found by our
   idempotency key in `pm.psp_tx_map`) becomes a REFUND intent through the refund intake
   (`pm_shared.intents.refunds`): IPPS clearing → the payer's wallet, `originalIntentId` the
   withdrawal, under key `pk_000000000000000000000001` and Idempotency-Key `ipps-refund:<refund id>`,
   with an id derived from the refund id. Row and intent are written in one transaction that holds
   the refund's row locked, and the intent's message is published after commit (the outbox relay
   covers a crash). So any number of hints, in any order, from any number of adapters, make one
   REFUND: the second finds the row decided, and the Idempotency-Key would replay the first anyway;
4. anything else is recorded, never credited, and raises a `psp_refund_unmatched` alert (one per
   refund): IPPS has no such refund or says it did not complete (REJECTED), or the refund names a
   transfer PM did not make, a payout that did not settle, another currency, or more than is left
   of the payout (UNMATCHED). A payout still under way when its refund arrives is waited for.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import Counter

from pm_adapter_ipps import queries
from pm_adapter_ipps.client import IppsClient, Refund, Unavailable
from pm_client.api import TERMINAL_STATES
from pm_shared.db import Conn, Pool
from pm_shared.intents import refunds
from pm_shared.messages import IntentSubmitted, Party, PspHint, now
from pm_shared.outbox import Outgoing, publish_committed
from pm_shared.reconciliation import alerts, kinds
from pm_shared.reconciliation.verify import Finding
from pm_shared.streams import Publisher
from pm_shared.streams.names import INTENTS
from pm_shared.streams.publisher import encode

log = logging.getLogger(__name__)

PSP = "ipps"
KEY_ID = "pk_000000000000000000000001"
"""The never-signing key PSP refunds are made under (migration 0020)."""
ALERT = "psp_refund_unmatched"
CHECK = "psp_refunds"
NAMESPACE = uuid.UUID("6f1c1c1e-2b7a-5d36-9a53-0c7b1f3e8a11")
"""Of the REFUND intents' ids: uuid5(NAMESPACE, "<psp>:<refund id>"), the same from every adapter."""
# What IPPS's refund ids look like (`rfd_…`): a path segment as it stands. Anything else names no
# IPPS refund, and is never put in a URL.
REFUND_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
CURRENCY = re.compile(r"[A-Z]{3}")
MAX_AMOUNT = 2**63 - 1

REFUNDS = Counter(
    "pm_psp_refunds_total", "PSP refund notifications decided, by PSP and outcome.", ["psp", "outcome"]
)
ALERTS = alerts.RAISED


def refund_intent_id(refund_id: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"{PSP}:{refund_id}")


def idempotency_key(refund_id: str) -> str:
    return f"{PSP}-refund:{refund_id}"


@dataclass(frozen=True)
class Payout:
    """The withdrawal a refund gives back, as `pm.intent` has it."""

    intent_id: uuid.UUID
    payer: str
    payee: dict[str, Any]
    """The withdrawal's target as stored (a PromptPay proxy or a scanned QR): the refund comes back
    from it (into the IPPS clearing account, as `pm_shared.intents.legs` maps it)."""


@dataclass(frozen=True)
class Verdict:
    """What a refund comes to: CREDITED (`payout` set), UNMATCHED, REJECTED, or None (not yet: wait)."""

    status: str | None
    detail: str
    payout: Payout | None = None
    original_intent_id: uuid.UUID | None = None


WAIT = Verdict(None, "")


def _json(value: Any) -> dict[str, Any]:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    found: dict[str, Any] = msgspec.json.decode(raw)
    return found


@dataclass
class RefundIntake:
    pool: Pool
    client: IppsClient
    publisher: Publisher

    async def on_hint(self, hint: PspHint) -> None:
        """A refund was notified: record it, and decide it unless it is decided already."""
        assert hint.refund_id is not None
        status = await self.pool.fetchval(queries.NOTICE_REFUND, PSP, hint.refund_id, hint.psp_reference)
        if status != "RECEIVED":
            log.info("refund %s notified again (%s): nothing to do", hint.refund_id, status)
            return
        await self.decide(hint.refund_id)

    async def sweep_once(self, idle_s: float, limit: int = 100) -> int:
        """Decide the refunds still RECEIVED and left alone `idle_s`; returns how many were tried."""
        rows = await self.pool.fetch(queries.SELECT_UNDECIDED_REFUNDS, PSP, idle_s, limit)
        for row in rows:
            try:
                await self.decide(row["refund_id"])
            except Unavailable as exc:
                log.info("sweep: refund %s still unknown: %s", row["refund_id"], exc)
        return len(rows)

    async def decide(self, refund_id: str) -> None:
        """Ask IPPS about `refund_id` and credit it, or record why not. Raises Unavailable when IPPS
        does not answer (the refund stays RECEIVED)."""
        if not REFUND_ID.fullmatch(refund_id):
            await self._finish(refund_id, None, Verdict("REJECTED", "not an IPPS refund id"))
            return
        try:
            refund = await self.client.refund(refund_id)
        except Unavailable as exc:
            await self.pool.execute(queries.TOUCH_REFUND, PSP, refund_id, f"IPPS did not answer: {exc}"[:500])
            raise
        verdict = await self._judge(refund_id, refund)
        if verdict.status is None:
            await self.pool.execute(queries.TOUCH_REFUND, PSP, refund_id, verdict.detail or None)
            log.info("refund %s: %s; tried again later", refund_id, verdict.detail)
            return
        await self._finish(refund_id, refund, verdict)

    async def _judge(self, refund_id: str, refund: Refund | None) -> Verdict:
        if refund is None:
            return Verdict("REJECTED", "IPPS has no such refund")
        if refund.refund_id != refund_id:
            return Verdict("REJECTED", f"IPPS answered for another refund ({refund.refund_id})")
        if refund.status == "PENDING":
            return Verdict(None, "IPPS has not completed the refund yet")
        if refund.status != "COMPLETED":
            return Verdict("REJECTED", f"IPPS says the refund is {refund.status}")
        if not (0 < refund.amount <= MAX_AMOUNT and CURRENCY.fullmatch(refund.currency)):
            return Verdict("REJECTED", f"IPPS's refund is {refund.amount} {refund.currency!r}")
        row = await self.pool.fetchrow(queries.SELECT_PAYOUT_BY_KEY, PSP, refund.idempotency_key)
        if row is None:
            return Verdict("UNMATCHED", f"transfer {refund.transfer_id} is not one PM made")
        if row["psp_transfer_id"] not in (None, refund.transfer_id):
            return Verdict(
                "UNMATCHED", f"our key names transfer {row['psp_transfer_id']}, not {refund.transfer_id}"
            )
        try:
            original = uuid.UUID(row["intent_id"])
        except ValueError:
            return Verdict("UNMATCHED", f"the payout's intent id {row['intent_id']!r} is not PM's")
        return await self._judge_intent(original)

    async def _judge_intent(self, original: uuid.UUID) -> Verdict:
        intent = await self.pool.fetchrow(queries.SELECT_INTENT, original)
        if intent is None or intent["type"] != "PROMPTPAY_WITHDRAWAL":
            found = "no intent" if intent is None else f"a {intent['type']}"
            return Verdict("UNMATCHED", f"the payout's intent is {found}", original_intent_id=original)
        if intent["state"] not in TERMINAL_STATES:
            return Verdict(None, f"the withdrawal is {intent['state']}: waiting for it to end")
        if intent["state"] != "SETTLED":
            return Verdict("UNMATCHED", f"the withdrawal is {intent['state']}", original_intent_id=original)
        source = _json(intent["source"])
        if source.get("kind") != "user" or not source.get("id"):
            return Verdict(
                "UNMATCHED", "the withdrawal was not paid from a wallet", original_intent_id=original
            )
        payee = _json(intent["target"])
        return Verdict("CREDITED", "", Payout(original, str(source["id"]), payee), original)

    async def _finish(self, refund_id: str, refund: Refund | None, verdict: Verdict) -> None:
        """Record the verdict; a credit makes its REFUND intent in the same transaction. One at a time
        per refund (the row is locked), and only while the refund is still RECEIVED."""
        submitted: IntentSubmitted | None = None
        async with self.pool.acquire() as conn, conn.transaction():
            status = await conn.fetchval(queries.LOCK_REFUND, PSP, refund_id)
            if status != "RECEIVED":
                log.info("refund %s was decided meanwhile (%s)", refund_id, status)
                return
            if verdict.payout is not None and refund is not None:
                verdict, submitted = await self._credit(conn, refund, verdict.payout)
            refund_intent = uuid.UUID(submitted.intent_id) if submitted is not None else None
            if verdict.status == "CREDITED" and refund_intent is None:  # replayed: the intent exists
                refund_intent = refund_intent_id(refund_id)
            await conn.execute(
                queries.FINISH_REFUND,
                PSP,
                refund_id,
                verdict.status,
                *_amount(refund),
                verdict.original_intent_id,
                refund_intent,
                verdict.detail or None,
            )
            if verdict.status != "CREDITED":
                await self._alert(conn, refund_id, refund, verdict)
        REFUNDS.labels(PSP, str(verdict.status).lower()).inc()
        if submitted is not None:
            await publish_committed(self.pool, self.publisher, [Outgoing(INTENTS.name, submitted)])
        if verdict.status == "CREDITED":
            log.info("refund %s credited: intent %s", refund_id, refund_intent_id(refund_id))

    async def _credit(
        self, conn: Conn, refund: Refund, payout: Payout
    ) -> tuple[Verdict, IntentSubmitted | None]:
        """The REFUND intent of `refund` (its message, when this call made it), or why the intake
        refused it."""
        new, message = refund_of(refund, payout)
        try:
            made = await refunds.create(
                conn, new, stream=INTENTS.name, message_id=message.message_id, payload=encode(message)
            )
        except refunds.RefundRefusedError as exc:
            detail = f"the refund intake refused it: {exc.code}: {exc.detail}"
            return Verdict("UNMATCHED", detail, original_intent_id=payout.intent_id), None
        if made.request_hash != new.request_hash:
            detail = f"intent {made.intent_id} was made for this refund id with another amount or payer"
            return Verdict("UNMATCHED", detail, original_intent_id=payout.intent_id), None
        credited = Verdict("CREDITED", "", payout, payout.intent_id)
        return credited, (None if made.replayed else message)

    async def _alert(self, conn: Conn, refund_id: str, refund: Refund | None, verdict: Verdict) -> None:
        detail: dict[str, object] = {
            "psp": PSP,
            "refundId": refund_id,
            "status": verdict.status,
            "why": verdict.detail,
        }
        if refund is not None:
            detail.update(transferId=refund.transfer_id, amount=refund.amount, currency=refund.currency)
        original = str(verdict.original_intent_id) if verdict.original_intent_id else None
        finding = Finding(ALERT, f"{PSP}:{refund_id}", original, detail)
        await alerts.record(
            conn,
            [finding],
            check=CHECK,
            period=kinds.CONTINUOUS,
            kinds_checked=(),
            subjects=(),
            run=f"{PSP}-refund:{refund_id}",
        )
        ALERTS.labels(ALERT).inc()
        log.error(
            "reconciliation alert %s: refund %s not credited (%s): %s",
            ALERT,
            refund_id,
            verdict.status,
            verdict.detail,
            extra={"intent_id": original},
        )


def _amount(refund: Refund | None) -> tuple[str | None, int | None, str | None]:
    """The transfer, amount and currency `pm.psp_refund` keeps of what IPPS said (what it can hold)."""
    if refund is None:
        return None, None, None
    amount = refund.amount if 0 < refund.amount <= MAX_AMOUNT else None
    return refund.transfer_id, amount, refund.currency if CURRENCY.fullmatch(refund.currency) else None


def refund_of(refund: Refund, payout: Payout) -> tuple[refunds.NewRefund, IntentSubmitted]:
    """The REFUND intent a confirmed refund makes, and its message: the same from every adapter."""
    intent_id = refund_intent_id(refund.refund_id)
    metadata = {"psp": PSP, "pspRefundId": refund.refund_id, "pspTransferId": refund.transfer_id}
    canonical = msgspec.json.encode(
        {
            "refundId": refund.refund_id,
            "amount": refund.amount,
            "currency": refund.currency,
            "original": str(payout.intent_id),
            "payer": payout.payer,
        }
    )
    new = refunds.NewRefund(
        id=intent_id,
        key_id=KEY_ID,
        idempotency_key=idempotency_key(refund.refund_id),
        request_hash=hashlib.sha256(canonical).digest(),
        amount=refund.amount,
        currency=refund.currency,
        source=payout.payee,
        target={"kind": "user", "id": payout.payer},
        original_intent_id=payout.intent_id,
        comment="PromptPay payout returned by the receiving bank",
        metadata=metadata,
    )
    message = IntentSubmitted(
        intent_id=str(intent_id),
        message_id=f"{intent_id}:submitted",
        produced_at=now(),
        type="REFUND",
        amount=refund.amount,
        currency=refund.currency,
        source=msgspec.convert(payout.payee, Party),
        target=Party(kind="user", id=payout.payer),
        key_id=KEY_ID,
        comment=new.comment,
        metadata=metadata,
    )
    return new, message
