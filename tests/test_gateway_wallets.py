"""Wallets end to end: the gateway asks the ledger-writer to open them, and reads balances back from the
ledger (a real writer, consuming `pm:ledger:commands` in this process, on the embedded ledger)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
import tigerbeetle as tb
from redis.asyncio import Redis

from pm_ledger_writer import handlers
from pm_ledger_writer.writer import Writer
from pm_shared.ledger import chart, ids, open_ledger
from pm_shared.streams import Consumer, Publisher
from pm_shared.streams.names import GROUP_LEDGER_WRITER
from pm_tools.testing.gateway import Gateway, gateway, gateway_env

__all__ = ["gateway", "gateway_env"]


@pytest.fixture
async def writer(gateway: Gateway, redis: Redis, reader: Redis) -> AsyncIterator[None]:
    ledger = await open_ledger("embedded+" + gateway.settings.database_url)
    (sub,) = handlers.subscriptions(Writer(ledger, Publisher(redis)))
    consumer = Consumer(
        redis=redis,
        reader=reader,
        stream=sub.stream,
        group=GROUP_LEDGER_WRITER,
        consumer="wallet-test-writer",
        decoder=sub.decoder,
        handle_batch=sub.handle_batch,
        block_ms=50,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await ledger.close()


def body(response: Any) -> Any:
    return msgspec.json.decode(response.content)


async def test_a_wallet_is_opened_by_the_writer_and_read_from_the_ledger(
    gateway: Gateway, writer: None
) -> None:
    owner = f"u-{tb.id() % 10**9}"
    opened = await gateway.send(
        "POST", "/v1/wallets", {"ownerKind": "user", "ownerId": owner, "currency": "THB"}
    )
    assert opened.status_code in (201, 202), opened.text
    if opened.status_code == 202:  # the writer took longer than the gateway waits: the repeat answers
        await asyncio.sleep(1)
        opened = await gateway.send(
            "POST", "/v1/wallets", {"ownerKind": "user", "ownerId": owner, "currency": "THB"}
        )
    assert opened.status_code == 201, opened.text
    assert body(opened) == {
        "ownerId": owner,
        "balances": [{"currency": "THB", "available": 0, "pending": 0, "posted": 0}],
    }
    again = await gateway.send(
        "POST", "/v1/wallets", {"ownerKind": "user", "ownerId": owner, "currency": "THB"}
    )
    assert again.status_code == 201

    # Money moved on the ledger shows up in the balances.
    ledger = await open_ledger("embedded+" + gateway.settings.database_url)
    try:
        wallet = ids.account_id("user", owner, chart.ledger_of("THB"), int(chart.Code.USER_WALLET))
        equity = tb.id()
        await ledger.create_accounts([tb.Account(id=equity, ledger=764, code=90)])
        results = await ledger.create_transfers(
            [
                tb.Transfer(
                    id=tb.id(),
                    debit_account_id=equity,
                    credit_account_id=wallet,
                    amount=5_000,
                    ledger=764,
                    code=1,
                ),
                tb.Transfer(
                    id=tb.id(),
                    debit_account_id=wallet,
                    credit_account_id=equity,
                    amount=1_200,
                    ledger=764,
                    code=1,
                    flags=tb.TransferFlags.PENDING,
                ),
            ]
        )
        assert {r.status for r in results} == {tb.CreateTransferStatus.CREATED}
    finally:
        await ledger.close()
    got = await gateway.send("GET", f"/v1/wallets/{owner}")
    assert got.status_code == 200
    assert body(got)["balances"] == [
        {"currency": "THB", "available": 3_800, "pending": 1_200, "posted": 5_000}
    ]
    history = await gateway.send("GET", f"/v1/wallets/{owner}/history")
    assert history.status_code == 200 and body(history) == {"items": [], "nextCursor": None}


async def test_an_unknown_wallet_is_not_found(gateway: Gateway) -> None:
    response = await gateway.send("GET", "/v1/wallets/nobody-here")
    assert response.status_code == 404
    assert body(response)["code"] == "wallet_not_found"


async def test_a_bad_wallet_request_is_refused(gateway: Gateway) -> None:
    response = await gateway.send(
        "POST", "/v1/wallets", {"ownerKind": "user", "ownerId": "u 1", "currency": "THB"}
    )
    assert response.status_code == 422
    response = await gateway.send(
        "POST", "/v1/wallets", {"ownerKind": "user", "ownerId": "u-1", "currency": "EUR"}
    )
    assert response.status_code == 422
