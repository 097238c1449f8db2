"""Intake of REFUND intents, the parts that need no fleet (the rest: tests/test_refunds.py)."""

from __future__ import annotations

import hashlib
import uuid

import msgspec

from pm_client.api import CreateIntent, MerchantParty, UserParty
from pm_gateway import intents, writes
from pm_gateway.auth import Caller
from pm_shared.keys.store import Permissions

_canonical = msgspec.json.Encoder(order="deterministic")


def test_an_intent_without_an_original_hashes_as_before_the_field_existed() -> None:
    """An Idempotency-Key used before `originalIntentId` existed still matches its request."""
    p2p = CreateIntent(
        type="P2P", amount=100, currency="THB", from_=UserParty(id="u-1"), to=UserParty(id="u-2")
    )
    before = msgspec.to_builtins(p2p)
    for later in ("miniappId", "quoteId", "originalIntentId"):
        assert before.pop(later) is None
    assert intents._request_hash(p2p) == hashlib.sha256(_canonical.encode(before)).digest()


def test_a_refunds_original_is_part_of_its_request_hash() -> None:
    def refund(original: uuid.UUID) -> CreateIntent:
        return CreateIntent(
            type="REFUND",
            amount=100,
            currency="THB",
            from_=MerchantParty(id="m-1"),
            to=UserParty(id="u-1"),
            original_intent_id=original,
        )

    one, other = uuid.uuid4(), uuid.uuid4()
    assert intents._request_hash(refund(one)) == intents._request_hash(refund(one))
    assert intents._request_hash(refund(one)) != intents._request_hash(refund(other))


def test_a_new_intent_carries_its_original_and_its_hash() -> None:
    original = uuid.uuid4()
    body = CreateIntent(
        type="REFUND",
        amount=100,
        currency="THB",
        from_=MerchantParty(id="m-1"),
        to=UserParty(id="u-1"),
        original_intent_id=original,
    )
    digest = intents._request_hash(body)
    caller = Caller(
        "pk_" + "1" * 24, Permissions(operations=frozenset({"REFUND"}), owners=None, merchant="m-1")
    )
    new = writes.NewIntent.of(uuid.uuid4(), caller, "key-1", digest, body)
    assert (new.original_intent_id, new.hash_bytes) == (original, digest)
