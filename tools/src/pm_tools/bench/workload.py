"""The saga and PSP benchmarks' workload: funded wallets, fee rules and a key set up before the fleet
starts, and intents inserted in bulk and published onto `pm:intents`.

Wallets are opened and funded straight on the embedded ledger (from operator equity) before any
service starts: once the ledger-writer runs it must be the ledger's only writer. One PRE and one
POST fee rule price every P2P payment, so the fee engine is on the hot path.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_shared import db, messages
from pm_shared.fees.rules import FeeRule, insert_rule
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import Permissions, create_key
from pm_shared.ledger import BATCH_MAX, chart, ids, open_ledger
from pm_shared.ledger.accounts import open_accounts, open_operator_accounts
from pm_shared.streams import BackPressureError, Publisher
from pm_shared.streams.names import INTENTS

USERS = 1_000
CURRENCY = "THB"
AMOUNT = 10_000
FUNDS = 10**12
"""Per wallet: enough for every intent a run can make it pay, fees included."""
PRE_RULE, POST_RULE = "bench-pre", "bench-post"
PRICED = ("P2P",)
"""The intent types the fee rules price by default (each type gets both rules)."""


@dataclass(frozen=True)
class Setup:
    """What `set_up` makes besides the wallets: a key for `operations`, the fee rules of `priced`, and
    each user's wallet in every one of `currencies` (only the `CURRENCY` wallet funded: an exchange
    pays into the others)."""

    operations: frozenset[str] = frozenset({"P2P"})
    priced: tuple[str, ...] = PRICED
    currencies: tuple[str, ...] = (CURRENCY,)


P2P_ONLY = Setup()
"""A P2P key, P2P's fee rules: the saga benchmark's."""


INSERT_CHUNK = 5_000
STREAM_MAXLEN = 10_000
"""The fleet's default: back-pressure at half of it is part of what is measured."""
PUBLISH_CHUNK = 500
BACKPRESSURE_SLEEP_S = 0.005


def user_names(count: int) -> list[str]:
    return [f"u-bench-{n:05d}" for n in range(count)]


def pairs(users: Sequence[str], count: int, rng: secrets.SystemRandom) -> list[tuple[str, str]]:
    """`count` (payer, payee) pairs of two distinct random wallets."""
    found = []
    for _ in range(count):
        payer, payee = rng.sample(users, 2)
        found.append((payer, payee))
    return found


def uuid7() -> uuid.UUID:
    """As the gateway mints intent ids: 48 bits of Unix milliseconds, then version, variant, random."""
    rand = int.from_bytes(os.urandom(10), "big")
    value = ((time.time_ns() // 1_000_000) & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76 | ((rand >> 62) & 0xFFF) << 64 | 0b10 << 62 | (rand & ((1 << 62) - 1))
    return uuid.UUID(int=value)


# --- before the fleet starts --------------------------------------------------------------------


async def set_up(dsn: str, cipher: Cipher, users: Sequence[str], setup: Setup = P2P_ONLY) -> tuple[str, str]:
    """Open the wallets (in each of `setup.currencies`) and fund those in `CURRENCY`, install the fee
    rules of `setup.priced`, make a key for `setup.operations`: (key id, secret).

    The ledger is written directly, before any service starts; its handle is closed on return.
    """
    ledger = await open_ledger("embedded+" + dsn)
    conn = await db.connect(dsn)
    try:
        currencies = list(dict.fromkeys((CURRENCY, *setup.currencies)))
        await open_operator_accounts(ledger, conn, currencies)
        specs = [
            chart.AccountSpec("user", user, currency, chart.Code.USER_WALLET)
            for currency in currencies
            for user in users
        ]
        await open_accounts(ledger, conn, specs)
        book = chart.ledger_of(CURRENCY)
        equity = ids.account_id("operator", "operator_equity", book, int(chart.Code.OPERATOR_EQUITY))
        funding = [
            tb.Transfer(
                id=tb.id(),
                debit_account_id=equity,
                credit_account_id=ids.account_id("user", user, book, int(chart.Code.USER_WALLET)),
                amount=FUNDS,
                ledger=book,
                code=2,  # an adjustment's transfer code
            )
            for user in users
        ]
        for start in range(0, len(funding), BATCH_MAX):
            results = await ledger.create_transfers(funding[start : start + BATCH_MAX])
            refused = {r.status for r in results} - {tb.CreateTransferStatus.CREATED}
            if refused:
                raise RuntimeError(f"funding the benchmark wallets failed: {refused}")
        for rule in fee_rules(setup.priced):
            await insert_rule(conn, rule)
        made, secret = await create_key(
            conn,
            cipher,
            permissions=Permissions(operations=setup.operations, owners=None),
            description="pm bench (saga)",
        )
    finally:
        await conn.close()
        await ledger.close()
    return made.key_id, secret


def fee_rules(priced: Sequence[str] = PRICED) -> list[FeeRule]:
    """Per type of `priced`: 1 % before (a pending leg in the authorization), 1.00 flat after (posted
    at settlement), both paid by the payer, so every type does the same fee work. P2P's rules keep
    the ids `PRE_RULE` and `POST_RULE`; another type's are suffixed with its name."""
    found = []
    for operation in priced:
        suffix = "" if operation == "P2P" else "-" + operation.lower().replace("_", "-")
        found += [
            _rule(PRE_RULE + suffix, operation, "intent.amount / 100", "PRE", 10, "pm bench: 1 %"),
            _rule(POST_RULE + suffix, operation, "100", "POST", 20, "pm bench: 1.00 flat"),
        ]
    return found


def _rule(rule_id: str, operation: str, amount: str, timing: str, priority: int, description: str) -> FeeRule:
    """A rule on `operation` charging the payer, on every payment, active since yesterday."""
    return FeeRule(
        rule_id=rule_id,
        version=0,
        amount=amount,
        timing=timing,
        fee_account_code=int(chart.Code.FEE_REVENUE),
        priority=priority,
        max_fee=1_000_000,
        active_from=datetime.now(UTC) - timedelta(days=1),
        description=description,
        operation_type=operation,
        condition="true",
        payer="source",
        active_until=None,
    )


# --- the intents --------------------------------------------------------------------------------


async def insert(
    conn: db.Conn, sql: str, key_id: str, *columns: Sequence[Any], party: str | None = None
) -> None:
    """Intents in CREATED by `sql` (`queries.INSERT_*`), `INSERT_CHUNK` rows per statement: key id,
    a request hash, `AMOUNT`, `CURRENCY`, `party` when given, then a chunk of each of `columns`."""
    extra = [] if party is None else [party]
    for start in range(0, len(columns[0]), INSERT_CHUNK):
        chunk = [list(column[start : start + INSERT_CHUNK]) for column in columns]
        await conn.execute(sql, key_id, secrets.token_bytes(32), AMOUNT, CURRENCY, *extra, *chunk)


def body(payer: str, payee: str) -> bytes:
    """The JSON of a P2P intent, as a client posts it to the gateway."""
    return msgspec.json.encode(
        {
            "type": "P2P",
            "amount": AMOUNT,
            "currency": CURRENCY,
            "from": {"kind": "user", "id": payer},
            "to": {"kind": "user", "id": payee},
            "fromName": payer,
            "toName": payee,
            "comment": "pm bench",
        }
    )


def submitted(intent_id: str, key_id: str, payer: str, payee: str) -> messages.IntentSubmitted:
    """The gateway's message for a P2P intent inserted by `queries.INSERT_P2P`."""
    return messages.IntentSubmitted(
        intent_id=intent_id,
        message_id=f"{intent_id}:submitted",
        produced_at=messages.now(),
        type="P2P",
        amount=AMOUNT,
        currency=CURRENCY,
        source=messages.Party(kind="user", id=payer),
        target=messages.Party(kind="user", id=payee),
        key_id=key_id,
        from_name=payer,
        to_name=payee,
    )


async def publish(redis: Redis, messages_: Sequence[messages.IntentSubmitted]) -> dict[str, float]:
    """Publish onto `pm:intents` in order, `PUBLISH_CHUNK` at a time, as fast as back-pressure
    admits: intent id → when its chunk was published (epoch s)."""
    publisher = Publisher(redis, maxlen=STREAM_MAXLEN)
    published: dict[str, float] = {}
    for start in range(0, len(messages_), PUBLISH_CHUNK):
        batch = messages_[start : start + PUBLISH_CHUNK]
        while True:
            at = time.time()
            try:
                await publisher.publish_many(INTENTS, batch)
                break
            except BackPressureError:
                await asyncio.sleep(BACKPRESSURE_SLEEP_S)
        published.update((m.intent_id, at) for m in batch)
    return published
