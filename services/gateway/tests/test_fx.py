"""Currency exchange through the gateway (no orchestrator runs: intents stay CREATED): rates are an
admin's and every one is kept; a quote is priced at the newest valid rate, refused when it is stale
or cannot be priced; an FX_EXCHANGE must carry out exactly its owner's unexpired quote, and one quote
makes one intent, however many requests race for it. Nothing is written by a refusal. (The exchange
settling on two ledgers is the fleet's test: tests/test_fx.py.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from pm_shared import db
from pm_tools.testing.gateway import Gateway

TTL_S = 2


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """A database of each test's own: which pairs have rates is part of what is tested."""
    return fresh_database_url


@pytest.fixture
def gateway_env() -> dict[str, str]:
    return {"PM_FX_QUOTE_TTL_S": str(TTL_S), "PM_FX_RATE_MAX_AGE_S": "3600"}


def code(response: httpx.Response) -> tuple[int, str]:
    return response.status_code, response.json()["code"]


async def set_rate(
    gateway: Gateway, pair: str = "USD/THB", rate: str = "35.8125", **more: Any
) -> httpx.Response:
    body = {"pair": pair, "rate": rate, "spreadBps": 50, **more}
    return await gateway.send("POST", "/v1/admin/fx/rates", body, key=gateway.admin)


async def quote(gateway: Gateway, owner: str, sell: dict[str, Any], buy: dict[str, Any]) -> httpx.Response:
    body = {"ownerId": owner, "sell": sell, "buy": buy}
    return await gateway.send("POST", "/v1/fx/quotes", body, key=gateway.user)


def exchange(owner: str, made: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {
        "type": "FX_EXCHANGE",
        "quoteId": made["quoteId"],
        "amount": made["sell"]["amount"],
        "currency": made["sell"]["currency"],
        "from": {"kind": "user", "id": owner},
        "to": {"kind": "user", "id": owner},
        **changes,
    }


async def submit(gateway: Gateway, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    headers = {"Idempotency-Key": key or uuid.uuid4().hex}
    return await gateway.send("POST", "/v1/intents", body, key=gateway.user, headers=headers)


async def counts(database_url: str) -> tuple[int, int]:
    conn = await db.connect(database_url)
    try:
        row = await conn.fetchrow(
            "SELECT (SELECT count(*) FROM pm.intent) AS intents, (SELECT count(*) FROM pm.fx_quote) AS quotes"
        )
        assert row is not None
        return row["intents"], row["quotes"]
    finally:
        await conn.close()


def owner() -> str:
    return f"u-{uuid.uuid4().hex[:8]}"


async def test_rates_are_an_admins_and_every_one_is_kept(gateway: Gateway) -> None:
    first = await set_rate(gateway, "USD/RUB", "91.5")
    second = await set_rate(gateway, "USD/RUB", "92.25", source="ECB")
    assert (first.status_code, second.status_code) == (201, 201), first.text
    assert second.json()["rate"] == "92.25" and second.json()["source"] == "ECB"
    listed = await gateway.send("GET", "/v1/admin/fx/rates?pair=USD/RUB", key=gateway.admin)
    assert [r["id"] for r in listed.json()][:2] == [second.json()["id"], first.json()["id"]]
    refused = await gateway.send(
        "POST", "/v1/admin/fx/rates", {"pair": "USD/RUB", "rate": "1", "spreadBps": 0}, key=gateway.user
    )
    assert code(refused) == (403, "forbidden_admin")
    for bad in ({"rate": "35.8e1"}, {"rate": 35.8}, {"rate": "0"}, {"pair": "USD/USD"}, {"spreadBps": 2_001}):
        body = {"pair": "USD/THB", "rate": "35.8125", "spreadBps": 50, **bad}
        answer = await gateway.send("POST", "/v1/admin/fx/rates", body, key=gateway.admin)
        assert code(answer) == (422, "validation_failed"), (bad, answer.text)


async def test_a_quote_is_priced_at_the_newest_rate_in_the_houses_favour(gateway: Gateway) -> None:
    assert (await set_rate(gateway)).status_code == 201
    user = owner()
    sold = await quote(gateway, user, {"currency": "USD", "amount": 10_000}, {"currency": "THB"})
    assert sold.status_code == 201, sold.text
    made = sold.json()
    assert (made["sell"], made["buy"]) == (
        {"currency": "USD", "amount": 10_000},
        {"currency": "THB", "amount": 356_334},
    )
    assert (made["principal"], made["fee"], made["rate"], made["pair"]) == (9_950, 50, "35.8125", "USD/THB")
    # The other way round, the same rate inverted: buying exactly 100.00 USD with baht.
    bought = await quote(gateway, user, {"currency": "THB"}, {"currency": "USD", "amount": 10_000})
    assert bought.json()["buy"]["amount"] == 10_000
    assert bought.json()["principal"] == 358_125 and bought.json()["fee"] == 1_791
    shown = await gateway.send("GET", f"/v1/fx/quotes/{made['quoteId']}", key=gateway.user)
    assert shown.json()["quoteId"] == made["quoteId"]
    other = await gateway.send("GET", f"/v1/fx/quotes/{uuid.uuid4()}", key=gateway.user)
    assert code(other) == (404, "quote_not_found")


async def test_quotes_that_cannot_be_priced_are_refused_and_stored_nowhere(
    gateway: Gateway, database_url: str
) -> None:
    user = owner()
    stale_from = (datetime.now(UTC) - timedelta(hours=2)).isoformat()
    assert (await set_rate(gateway, "THB/RUB", "2.5", validFrom=stale_from)).status_code == 201
    assert (await set_rate(gateway)).status_code == 201
    before = await counts(database_url)
    cases: list[tuple[dict[str, Any], dict[str, Any], tuple[int, str]]] = [
        ({"currency": "THB", "amount": 1_000}, {"currency": "RUB"}, (422, "rate_stale")),
        ({"currency": "RUB", "amount": 1_000}, {"currency": "USD"}, (422, "unknown_pair")),
        ({"currency": "THB", "amount": 35}, {"currency": "USD"}, (422, "amount_too_small")),
        ({"currency": "USD", "amount": 10**12}, {"currency": "THB"}, (422, "amount_too_large")),
        ({"currency": "USD", "amount": 100}, {"currency": "THB", "amount": 100}, (422, "validation_failed")),
        ({"currency": "USD"}, {"currency": "THB"}, (422, "validation_failed")),
        ({"currency": "USD", "amount": 100}, {"currency": "USD"}, (422, "validation_failed")),
    ]
    for sell, buy, expected in cases:
        answer = await quote(gateway, user, sell, buy)
        assert code(answer) == expected, (sell, buy, answer.text)
    assert await counts(database_url) == before


async def test_an_exchange_carries_out_exactly_its_owners_unexpired_quote(
    gateway: Gateway, database_url: str
) -> None:
    assert (await set_rate(gateway)).status_code == 201
    user, other = owner(), owner()
    made = (await quote(gateway, user, {"currency": "THB", "amount": 100_000}, {"currency": "USD"})).json()
    before = await counts(database_url)
    refusals = [
        (exchange(user, made, amount=made["sell"]["amount"] + 1), (422, "quote_mismatch")),
        (exchange(user, made, currency="USD"), (422, "quote_mismatch")),
        (exchange(other, made), (422, "quote_not_found")),
        (exchange(user, made, quoteId=str(uuid.uuid4())), (422, "quote_not_found")),
        (exchange(user, made, to={"kind": "user", "id": other}), (422, "invalid_parties")),
        ({**exchange(user, made), "quoteId": None}, (422, "validation_failed")),
        (
            {**exchange(user, made), "type": "P2P", "to": {"kind": "user", "id": other}},
            (422, "validation_failed"),
        ),
    ]
    for body, expected in refusals:
        answer = await submit(gateway, body)
        assert code(answer) == expected, (body, answer.text)
    assert await counts(database_url) == before

    accepted = await submit(gateway, exchange(user, made), key="fx-1")
    assert accepted.status_code == 202, accepted.text
    intent = accepted.json()
    # The intent is the quote carried out: its id is the quote's, and it shows what it buys.
    assert intent["id"] == made["quoteId"]
    assert (
        intent["exchange"]["buyAmount"] == made["buy"]["amount"]
        and intent["exchange"]["spread"] == made["fee"]
    )
    await asyncio.sleep(TTL_S + 0.5)
    # Once expired, the same request still finds its intent; a new use of the quote is refused.
    again = await submit(gateway, exchange(user, made), key="fx-1")
    assert (again.status_code, again.json()["id"]) == (202, made["quoteId"])
    assert code(await submit(gateway, exchange(user, made), key="fx-2")) == (409, "quote_used")
    unused = (await quote(gateway, user, {"currency": "THB", "amount": 50_000}, {"currency": "USD"})).json()
    await asyncio.sleep(TTL_S + 0.5)
    assert code(await submit(gateway, exchange(user, unused))) == (422, "quote_expired")


async def test_one_quote_makes_one_exchange_however_many_requests_race(
    gateway: Gateway, database_url: str
) -> None:
    assert (await set_rate(gateway)).status_code == 201
    user = owner()
    made = (await quote(gateway, user, {"currency": "USD", "amount": 5_000}, {"currency": "THB"})).json()
    answers = await asyncio.gather(
        *(submit(gateway, exchange(user, made), key=f"race-{i}") for i in range(8))
    )
    assert sorted(a.status_code for a in answers) == [202] + [409] * 7, [a.text for a in answers]
    assert {a.json()["code"] for a in answers if a.status_code == 409} == {"quote_used"}
    conn = await db.connect(database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM pm.intent WHERE id = $1", uuid.UUID(made["quoteId"]))
            == 1
        )
    finally:
        await conn.close()
