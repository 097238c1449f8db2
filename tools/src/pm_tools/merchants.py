"""Merchants as `pm merchants` manages them (docs/api.md, "Merchants"): the same store and the same
account opening as the gateway's admin routes, run from the command line on the database, Redis and
the ledger directly. Every change is recorded with the actor `pm merchants (<user>)`.

`deactivate --close-accounts`, `close-accounts` and `reactivate` close and reopen the merchant's
ledger accounts as the admin API does (`pm_shared.merchants.closing`), waiting for the intents in
flight and the ledger-writer up to `--wait`.

`create` is idempotent like `POST /v1/admin/merchants`: its Idempotency-Key defaults to
`cli:<merchant id>`, so running the same command again finishes the same merchant (its accounts are
opened by the ledger-writer; with none running, they are reported as not opened yet).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import msgspec
import tigerbeetle as tb

from pm_client.merchant_api import CreateMerchant
from pm_shared import db
from pm_shared.keys import store as keys
from pm_shared.keys.crypto import Cipher
from pm_shared.ledger import accounts, chart, open_ledger
from pm_shared.ledger import opening as ledger_opening
from pm_shared.merchants import closing, store
from pm_shared.settings import CommonSettings
from pm_shared.streams import Publisher
from pm_shared.streams.connection import connect
from pm_tools.database import connection

APPLICATION = "pm merchants"
_STEP_S = 1.0
_canonical = msgspec.json.Encoder(order="deterministic")


def actor() -> str:
    return f"{APPLICATION} ({getpass.getuser()})"


@dataclass(frozen=True)
class Shown:
    merchant: store.Merchant
    accounts: list[tuple[str, int, bool]]
    """(currency, account id, opened) per currency."""
    events: list[store.Event]
    secret: str | None = None
    created: bool = False


def _shown(
    merchant: store.Merchant,
    opened: dict[chart.AccountSpec, tb.Account],
    events: list[store.Event],
    *,
    secret: str | None = None,
    created: bool = False,
) -> Shown:
    rows = [(s.currency, accounts.spec_account(s).id, s in opened) for s in store.account_specs(merchant)]
    return Shown(merchant, rows, events, secret, created)


def request(merchant_id: str, name: str, currencies: list[str]) -> CreateMerchant:
    """The onboarding request, checked as the API checks it; ValueError says what is wrong."""
    try:
        return msgspec.convert(
            {"merchantId": merchant_id, "name": name, "currencies": currencies}, CreateMerchant
        )
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None


async def create(
    config: CommonSettings, cipher: Cipher, wanted: CreateMerchant, idempotency_key: str, *, wait_s: float
) -> Shown:
    onboarding = store.Onboarding(
        merchant_id=wanted.merchant_id,
        name=wanted.name,
        currencies=tuple(wanted.currencies),
        created_by=actor(),
        idempotency_key=idempotency_key,
        request_hash=hashlib.sha256(_canonical.encode(wanted)).digest(),
    )
    async with connection(config.database_url, APPLICATION) as conn:
        merchant, created = await store.onboard(conn, cipher, onboarding)
        secret = await keys.current_secret(conn, cipher, merchant.key_id)
    redis = connect(config.redis_url, name="pm-merchants")
    ledger = await open_ledger(config.ledger_url or "embedded+" + config.database_url, readonly=True)
    pool = await db.create_pool(config.database_url, max_size=1, application_name=APPLICATION)
    try:
        publisher = Publisher(redis, partitions=config.stream_partitions, maxlen=config.stream_maxlen)
        opened = await ledger_opening.open_accounts(
            ledger, publisher, pool, store.account_specs(merchant), wait_s=wait_s
        )
    finally:
        await pool.close()
        await ledger.close()
        await redis.aclose()
    return _shown(merchant, opened, [], secret=secret, created=created)


async def show(config: CommonSettings, merchant_id: str) -> Shown:
    async with connection(config.database_url, APPLICATION) as conn:
        merchant = await store.get(conn, merchant_id)
        events = await store.events(conn, merchant_id)
    ledger = await open_ledger(config.ledger_url or "embedded+" + config.database_url, readonly=True)
    try:
        opened = await ledger_opening.existing(ledger, store.account_specs(merchant))
    finally:
        await ledger.close()
    return _shown(merchant, opened, events)


async def list_all(database_url: str) -> list[store.Merchant]:
    async with connection(database_url, APPLICATION) as conn:
        return await store.list_all(conn)


async def set_status(database_url: str, merchant_id: str, status: str) -> store.Merchant:
    async with connection(database_url, APPLICATION) as conn:
        return await store.set_status(conn, merchant_id, status, actor())


@asynccontextmanager
async def _closer(config: CommonSettings, wait_s: float) -> AsyncIterator[closing.Closer]:
    redis = connect(config.redis_url, name="pm-merchants")
    ledger = await open_ledger(config.ledger_url or "embedded+" + config.database_url, readonly=True)
    pool = await db.create_pool(config.database_url, max_size=1, application_name=APPLICATION)
    try:
        publisher = Publisher(redis, partitions=config.stream_partitions, maxlen=config.stream_maxlen)
        yield closing.Closer(ledger, publisher, pool, actor(), wait_s)
    finally:
        await pool.close()
        await ledger.close()
        await redis.aclose()


async def close_accounts(
    config: CommonSettings, merchant_id: str, *, wait_s: float
) -> tuple[store.Merchant, bool]:
    """Close a deactivated merchant's accounts, waiting up to `wait_s` for the intents still moving its
    money (MerchantBusyError after that) and for the ledger-writer; False: not closed yet."""
    deadline = time.monotonic() + wait_s
    async with _closer(config, min(wait_s, _STEP_S)) as closer:
        while True:
            try:
                merchant, closed = await closer.close(merchant_id)
            except closing.MerchantBusyError:
                if time.monotonic() >= deadline:
                    raise
                await asyncio.sleep(_STEP_S)
                continue
            if closed or time.monotonic() >= deadline:
                return merchant, closed


async def reactivate(
    config: CommonSettings, merchant_id: str, *, wait_s: float
) -> tuple[store.Merchant, bool]:
    """Reopen the merchant's accounts if they were closed, then accept its key again; False: still
    reopening after `wait_s` (run it again)."""
    deadline = time.monotonic() + wait_s
    async with _closer(config, min(wait_s, _STEP_S)) as closer:
        while True:
            merchant, reopened = await closer.reopen(merchant_id)
            if reopened:
                break
            if time.monotonic() >= deadline:
                return merchant, False
    return await set_status(config.database_url, merchant_id, store.ACTIVE), True


async def rotate(
    database_url: str, cipher: Cipher, merchant_id: str, grace_s: float
) -> tuple[keys.ServiceKey, str]:
    async with connection(database_url, APPLICATION) as conn:
        _, key, secret = await store.rotate_secret(conn, cipher, merchant_id, actor(), grace_s=grace_s)
    return key, secret
