"""The writer in process, on real Redis streams and the embedded ledger on PostgreSQL.

Commands go in on `pm:ledger:commands` and results come out on `pm:ledger:results` (the real stream
names, in the test database 9; their keys are deleted before each test). Accounts get fresh ids
(`tb.id()`), so tests sharing the session database never see each other's money.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, cast

import msgspec
import pytest
import tigerbeetle as tb
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from pm_ledger_writer import handlers
from pm_ledger_writer.writer import Writer
from pm_shared.ledger import Ledger, open_ledger
from pm_shared.messages import LedgerAccount, LedgerCommand, LedgerResult, LedgerTransfer, new_message_id, now
from pm_shared.runtime import RedisClients, Subscription, consumers_for
from pm_shared.settings import CommonSettings, load_settings
from pm_shared.streams import Consumer, Delivery, Publisher, provision
from pm_shared.streams.names import GROUP_LEDGER_WRITER, LEDGER_COMMANDS, LEDGER_RESULTS, stream_key
from pm_shared.streams.publisher import PAYLOAD_FIELD
from pm_tools.testing.fixtures import eventually

THB = 764
WALLET, EQUITY = 1, 90
LINKED = int(tb.TransferFlags.LINKED)
PENDING = int(tb.TransferFlags.PENDING)
POST = int(tb.TransferFlags.POST_PENDING_TRANSFER)
COMMANDS_KEY = stream_key(LEDGER_COMMANDS.name, 0)
RESULTS_KEY = stream_key(LEDGER_RESULTS.name, 0)
_results = msgspec.json.Decoder(LedgerResult)


async def delete_ledger_streams(redis: Redis) -> None:
    keys = [k async for k in redis.scan_iter(match="{pm:ledger:*")]
    if keys:
        await redis.delete(*keys)


@dataclass
class Rig:
    redis: Redis
    reader: Redis
    ledger: Ledger
    writer: Writer
    publisher: Publisher
    running: list[tuple[asyncio.Event, asyncio.Task[None]]]

    def start(self) -> None:
        """Start consuming (tests that need one batch publish everything first)."""
        (sub,) = handlers.subscriptions(self.writer)
        consumer = Consumer(
            redis=self.redis,
            reader=self.reader,
            stream=sub.stream,
            group=GROUP_LEDGER_WRITER,
            consumer="test-writer",
            decoder=sub.decoder,
            handle_batch=sub.handle_batch,
            block_ms=50,
            claim_interval_ms=100,
            retry_delay_ms=0,
        )
        stop = asyncio.Event()
        self.running.append((stop, asyncio.create_task(consumer.run(stop))))

    async def publish(self, *commands: LedgerCommand) -> None:
        for command in commands:
            await self.publisher.publish(LEDGER_COMMANDS, command)

    async def results(self) -> list[LedgerResult]:
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await self.redis.xrange(RESULTS_KEY)  # type: ignore[assignment]
        return [_results.decode(fields[PAYLOAD_FIELD]) for _, fields in entries]

    async def wait_results(self, count: int) -> list[LedgerResult]:
        async def arrived() -> bool:
            return len(await self.results()) >= count

        await eventually(arrived, timeout=15, what=f"{count} results on {RESULTS_KEY}")
        results = await self.results()
        assert len(results) == count, results
        return results

    async def nothing_pending(self) -> None:
        async def settled() -> bool:
            return int((await self.redis.xpending(COMMANDS_KEY, GROUP_LEDGER_WRITER))["pending"]) == 0

        await eventually(settled, timeout=10, what="every command acked")

    async def balances(self, *ids: int) -> dict[int, tuple[int, int]]:
        """(debits_posted, credits_posted) by account id."""
        return {
            a.id: (a.debits_posted, a.credits_posted) for a in await self.ledger.lookup_accounts(list(ids))
        }


@pytest.fixture
async def rig(redis: Redis, reader: Redis, database_url: str) -> AsyncIterator[Rig]:
    await delete_ledger_streams(redis)
    await provision(redis, 1, [LEDGER_COMMANDS, LEDGER_RESULTS])
    ledger = await open_ledger("embedded+" + database_url)
    publisher = Publisher(redis)
    rig = Rig(redis, reader, ledger, Writer(ledger, publisher), publisher, [])
    try:
        yield rig
    finally:
        for stop, _ in rig.running:
            stop.set()
        await asyncio.gather(*(task for _, task in rig.running))
        await ledger.close()
        await delete_ledger_streams(redis)


def command(
    *,
    transfers: Sequence[LedgerTransfer] = (),
    accounts: Sequence[LedgerAccount] = (),
    intent: str | None = None,
) -> LedgerCommand:
    return LedgerCommand(
        intent_id=intent or f"int_{tb.id():032x}",
        message_id=new_message_id(),
        produced_at=now(),
        step="authorize",
        accounts=list(accounts),
        transfers=list(transfers),
    )


def transfer(debit: int, credit: int, amount: int, *, flags: int = 0, **fields: int) -> LedgerTransfer:
    return LedgerTransfer(
        id=tb.id(),
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=THB,
        code=1,
        flags=flags,
        **fields,
    )


def chain(*transfers: LedgerTransfer) -> list[LedgerTransfer]:
    """The same transfers as one linked chain (every event linked but the last)."""
    last = len(transfers) - 1
    return [
        msgspec.structs.replace(t, flags=t.flags | LINKED) if i < last else t for i, t in enumerate(transfers)
    ]


async def open_accounts(rig: Rig, wallets: int = 2) -> tuple[int, list[int]]:
    """An operator equity account and `wallets` user wallets (which cannot go below zero)."""
    equity = LedgerAccount(id=tb.id(), ledger=THB, code=EQUITY)
    users = [
        LedgerAccount(
            id=tb.id(), ledger=THB, code=WALLET, flags=int(tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
        )
        for _ in range(wallets)
    ]
    results = await rig.ledger.create_accounts(
        [
            tb.Account(id=a.id, ledger=a.ledger, code=a.code, flags=tb.AccountFlags(a.flags))
            for a in [equity, *users]
        ]
    )
    assert {r.status for r in results} == {tb.CreateAccountStatus.CREATED}
    return equity.id, [u.id for u in users]


def statuses(result: LedgerResult) -> list[str]:
    return [e.status for e in result.accounts + result.transfers]


async def test_commands_in_results_out_with_the_ledgers_own_statuses(rig: Rig) -> None:
    rig.start()
    wallet_accounts = [LedgerAccount(id=tb.id(), ledger=THB, code=WALLET) for _ in range(2)]
    equity = LedgerAccount(id=tb.id(), ledger=THB, code=EQUITY)
    open_cmd = command(accounts=[equity, *wallet_accounts])
    fund = command(transfers=[transfer(equity.id, wallet_accounts[0].id, 10_000)])
    await rig.publish(open_cmd)
    await rig.wait_results(1)
    await rig.publish(fund)
    opened, funded = await rig.wait_results(2)

    assert opened.command_id == open_cmd.message_id and opened.intent_id == open_cmd.intent_id
    assert opened.ok and opened.error is None
    assert [e.id for e in opened.accounts] == [equity.id, *(a.id for a in wallet_accounts)]
    assert statuses(opened) == ["CREATED"] * 3
    assert all(e.timestamp > 0 for e in opened.accounts)
    assert opened.message_id == f"{open_cmd.message_id}:result"
    assert funded.ok and statuses(funded) == ["CREATED"]
    assert [e.id for e in funded.transfers] == [t.id for t in fund.transfers]

    # An invalid transfer is the ledger's to judge: its own result code, ok=False.
    strict = LedgerAccount(
        id=tb.id(), ledger=THB, code=WALLET, flags=int(tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
    )
    await rig.publish(command(accounts=[strict]))
    await rig.wait_results(3)
    overdraw = command(transfers=[transfer(strict.id, wallet_accounts[1].id, 1)])
    await rig.publish(overdraw)
    refused = (await rig.wait_results(4))[-1]
    assert refused.command_id == overdraw.message_id
    assert not refused.ok and statuses(refused) == ["EXCEEDS_CREDITS"] and refused.error is None
    await rig.nothing_pending()
    assert (await rig.balances(strict.id))[strict.id] == (0, 0)


async def test_a_bad_command_is_refused_alone_and_its_batch_mates_succeed(rig: Rig) -> None:
    equity, (alice, bob) = await open_accounts(rig)
    before = await rig.balances(alice, bob)
    good_1 = command(transfers=[transfer(equity, alice, 500)])
    open_chain = command(transfers=[transfer(equity, alice, 7, flags=LINKED)])
    out_of_range = command(transfers=[transfer(equity, bob, 7, user_data_32=2**32)])
    good_2 = command(transfers=chain(transfer(equity, bob, 300), transfer(equity, bob, 200)))
    await rig.publish(good_1, open_chain, out_of_range, good_2)
    rig.start()  # after publishing: all four are read as one batch

    results = {r.command_id: r for r in await rig.wait_results(4)}
    assert not results[open_chain.message_id].ok
    assert "open" in (results[open_chain.message_id].error or "")
    assert results[open_chain.message_id].transfers == []
    assert not results[out_of_range.message_id].ok
    assert "user_data_32" in (results[out_of_range.message_id].error or "")
    for good in (good_1, good_2):
        assert results[good.message_id].ok, results[good.message_id]
        assert [e.id for e in results[good.message_id].transfers] == [t.id for t in good.transfers]
        assert all(s == "CREATED" for s in statuses(results[good.message_id]))
    await rig.nothing_pending()
    after = await rig.balances(alice, bob)
    assert after[alice][1] - before[alice][1] == 500
    assert after[bob][1] - before[bob][1] == 500


async def test_a_retried_command_gets_the_same_outcome_and_is_applied_once(rig: Rig) -> None:
    equity, (alice, bob) = await open_accounts(rig)
    rig.start()
    fund = command(transfers=[transfer(equity, alice, 1_000)])
    pay = command(transfers=[transfer(alice, bob, 400), transfer(alice, bob, 100)])
    await rig.publish(fund, pay)
    await rig.wait_results(2)
    await rig.publish(pay)  # the very same message again (an outbox relay re-sends it)
    first, second = [r for r in await rig.wait_results(3) if r.command_id == pay.message_id]

    assert first.ok and statuses(first) == ["CREATED", "CREATED"]
    assert second.ok and statuses(second) == ["EXISTS", "EXISTS"]
    assert second.message_id == first.message_id  # one result however often it is sent
    assert [e.timestamp for e in second.transfers] == [e.timestamp for e in first.transfers]
    await rig.nothing_pending()
    assert await rig.balances(alice, bob) == {alice: (500, 1_000), bob: (0, 500)}


async def test_a_retry_of_a_transiently_failed_command_gets_its_first_failure_back(rig: Rig) -> None:
    # A writer that applied these and died before publishing the answers leaves the retry only
    # ID_ALREADY_FAILED (the ids are burned); the writer infers what the first attempt failed with.
    equity, (alice, bob) = await open_accounts(rig)
    nowhere = tb.id()
    broke = command(transfers=chain(transfer(alice, bob, 500, flags=PENDING), transfer(alice, equity, 20)))
    ghost = command(transfers=[transfer(equity, nowhere, 5)])
    unknown_hold = command(transfers=[transfer(0, 0, 0, flags=POST, pending_id=tb.id())])
    first = await rig.writer.write([broke, ghost, unknown_hold])
    assert [statuses(r) for r in first] == [
        ["EXCEEDS_CREDITS", "LINKED_EVENT_FAILED"],
        ["CREDIT_ACCOUNT_NOT_FOUND"],
        ["PENDING_TRANSFER_NOT_FOUND"],
    ]
    again = await rig.writer.write([broke, ghost, unknown_hold])
    assert [statuses(r) for r in again] == [
        ["ID_ALREADY_FAILED", "LINKED_EVENT_FAILED"],
        ["ID_ALREADY_FAILED"],
        ["ID_ALREADY_FAILED"],
    ]
    assert [[e.first_failure for e in r.transfers] for r in again] == [
        ["EXCEEDS_CREDITS", None],
        ["CREDIT_ACCOUNT_NOT_FOUND"],
        ["PENDING_TRANSFER_NOT_FOUND"],
    ]
    assert all(e.first_failure is None for r in first for e in r.transfers)


async def test_a_committed_linked_chain_retried_is_ok_with_exists_for_each_event(rig: Rig) -> None:
    equity, (alice, bob) = await open_accounts(rig)
    rig.start()
    await rig.publish(command(transfers=[transfer(equity, alice, 1_000)]))
    await rig.wait_results(1)
    authorize = command(
        transfers=chain(transfer(alice, bob, 600), transfer(alice, equity, 10), transfer(alice, bob, 1))
    )
    await rig.publish(authorize)
    await rig.wait_results(2)
    await rig.publish(authorize)
    first, second = [r for r in await rig.wait_results(3) if r.command_id == authorize.message_id]

    assert first.ok and statuses(first) == ["CREATED"] * 3
    # The ledger itself answers [EXISTS, LINKED_EVENT_FAILED, …]; the writer confirms with a lookup.
    assert second.ok and statuses(second) == ["EXISTS"] * 3
    assert [e.id for e in second.transfers] == [t.id for t in authorize.transfers]
    assert [e.timestamp for e in second.transfers] == [e.timestamp for e in first.transfers]
    assert await rig.balances(alice, bob) == {alice: (611, 1_000), bob: (0, 601)}


def _sample(name: str, operation: str) -> float:
    return REGISTRY.get_sample_value(name, {"operation": operation}) or 0.0


async def test_many_commands_share_one_request_and_each_gets_its_own_result(rig: Rig) -> None:
    equity, wallets = await open_accounts(rig, wallets=5)
    commands = [
        command(
            transfers=chain(*(transfer(equity, wallets[i % 5], 10 + i) for _ in range(i % 3 + 1)))
            if i % 2
            else [transfer(equity, wallets[i % 5], 10 + i) for _ in range(i % 3 + 1)]
        )
        for i in range(50)
    ]
    requests = _sample("pm_ledger_request_events_count", "create_transfers")
    events = _sample("pm_ledger_request_events_sum", "create_transfers")
    await rig.publish(*commands)
    rig.start()

    results = await rig.wait_results(50)
    assert [r.command_id for r in results] == [c.message_id for c in commands]  # in command order
    for sent, got in zip(commands, results, strict=True):
        assert got.intent_id == sent.intent_id
        assert got.ok, got
        assert [e.id for e in got.transfers] == [t.id for t in sent.transfers]
        assert all(e.status == "CREATED" for e in got.transfers)
    total = sum(len(c.transfers) for c in commands)
    assert _sample("pm_ledger_request_events_count", "create_transfers") - requests == 1
    assert _sample("pm_ledger_request_events_sum", "create_transfers") - events == total
    await rig.nothing_pending()
    credited = {w: c for w, (_, c) in (await rig.balances(*wallets)).items()}
    expected = dict.fromkeys(wallets, 0)
    for i, c in enumerate(commands):
        expected[wallets[i % 5]] += (10 + i) * len(c.transfers)
    assert credited == expected


async def test_a_batch_of_several_requests_sends_them_back_to_back_before_a_later_batch(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    equity, (alice, bob) = await open_accounts(rig)
    sent: list[list[int]] = []
    real = rig.ledger.create_transfers

    async def recording(transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        sent.append([t.id for t in transfers])
        return await real(transfers)

    monkeypatch.setattr(rig.ledger, "create_transfers", recording)
    writer = Writer(rig.ledger, rig.publisher, batch_max=3)
    # Two linked transfers each: one command per request of at most 3 events.
    first = [
        command(transfers=chain(transfer(equity, alice, 1), transfer(equity, alice, 2))) for _ in range(3)
    ]
    refused = command(transfers=[transfer(equity, alice, 1, flags=LINKED)])  # a chain left open
    first.insert(1, refused)
    second = [command(transfers=[transfer(equity, bob, 3)]) for _ in range(3)]

    # As with batches in flight: the second is handed over while the first is still being written.
    got_first, got_second = await asyncio.gather(writer.write(first), writer.write(second))

    assert [r.command_id for r in got_first] == [c.message_id for c in first]
    assert [r.ok for r in got_first] == [True, False, True, True]
    assert got_first[1].error is not None and "left open" in got_first[1].error
    assert all(r.ok for r in got_second)
    applied = [c for c in first if c is not refused]
    assert sent == [[t.id for t in c.transfers] for c in applied] + [[c.transfers[0].id for c in second]]
    assert (await rig.balances(alice, bob)) == {alice: (0, 9), bob: (0, 9)}


# -- what leaves a batch pending (handled directly, as the consumer would hand it over) -------------


def deliveries(*commands: LedgerCommand) -> list[Delivery[LedgerCommand]]:
    return [
        Delivery(entry_id=f"1-{i}", key=COMMANDS_KEY, message=c, attempt=1) for i, c in enumerate(commands)
    ]


async def test_a_ledger_failure_fails_the_whole_batch_and_publishes_nothing(
    rig: Rig, database_url: str
) -> None:
    equity, (alice, _) = await open_accounts(rig)
    broken = await open_ledger("embedded+" + database_url)
    await broken.close()  # its pool is gone: every request raises, like a lost connection
    batch = deliveries(
        command(transfers=[transfer(equity, alice, 5)]), command(transfers=[transfer(equity, alice, 6)])
    )
    failures = await Writer(broken, rig.publisher).handle_batch(batch)
    assert set(failures) == {d.entry_id for d in batch}
    assert await rig.results() == []
    assert (await rig.balances(alice))[alice] == (0, 0)


async def test_back_pressure_on_results_fails_the_batch_and_the_retry_gets_the_same_outcome(rig: Rig) -> None:
    equity, (alice, _) = await open_accounts(rig)
    fund = command(transfers=[transfer(equity, alice, 5)])
    refusing = Publisher(rig.redis, threshold=0)  # the results stream counts as full
    failures = await Writer(rig.ledger, refusing).handle_batch(deliveries(fund))
    assert set(failures) == {"1-0"}
    assert await rig.results() == []

    # The ledger had applied it; the retry is recognised as a duplicate and reported as success.
    assert await rig.writer.handle_batch(deliveries(fund)) == {}
    (result,) = await rig.results()
    assert result.ok and statuses(result) == ["EXISTS"]
    assert (await rig.balances(alice))[alice] == (0, 5)


async def test_a_writer_without_the_lease_never_writes(rig: Rig) -> None:
    equity, (alice, _) = await open_accounts(rig)
    idle = Writer(rig.ledger, rig.publisher, is_active=lambda: False)
    failures = await idle.handle_batch(deliveries(command(transfers=[transfer(equity, alice, 5)])))
    assert set(failures) == {"1-0"}
    assert await rig.results() == []
    assert (await rig.balances(alice))[alice] == (0, 0)


async def test_an_outage_is_waited_out_in_place_and_the_batch_then_goes_through(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    equity, (alice, _) = await open_accounts(rig)
    real = rig.ledger.create_transfers
    calls = 0

    async def down_twice(transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        nonlocal calls
        calls += 1
        if calls <= 2:
            raise ConnectionRefusedError("PostgreSQL is restarting")
        return await real(transfers)

    monkeypatch.setattr(rig.ledger, "create_transfers", down_twice)
    writer = Writer(rig.ledger, rig.publisher, stop=asyncio.Event(), retry_first_s=0.01)
    # No failure reaches the consumer, so no delivery is spent on the outage.
    assert await writer.handle_batch(deliveries(command(transfers=[transfer(equity, alice, 5)]))) == {}
    assert calls == 3
    (result,) = await rig.results()
    assert result.ok and statuses(result) == ["CREATED"]
    assert (await rig.balances(alice))[alice] == (0, 5)


async def test_stopping_during_an_outage_leaves_the_batch_pending(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    equity, (alice, _) = await open_accounts(rig)

    async def down(transfers: list[tb.Transfer]) -> list[tb.CreateTransferResult]:
        raise ConnectionRefusedError("PostgreSQL is down")

    monkeypatch.setattr(rig.ledger, "create_transfers", down)
    stop = asyncio.Event()
    writer = Writer(rig.ledger, rig.publisher, stop=stop, retry_first_s=5)
    handling = asyncio.create_task(
        writer.handle_batch(deliveries(command(transfers=[transfer(equity, alice, 5)])))
    )
    await asyncio.sleep(0.1)
    assert not handling.done()  # waiting the outage out
    stop.set()
    failures = await asyncio.wait_for(handling, 1)  # at once, not after the 5 s backoff
    assert set(failures) == {"1-0"}
    assert await rig.results() == []


async def test_results_refused_by_back_pressure_are_published_again_soon(rig: Rig) -> None:
    equity, (alice, _) = await open_accounts(rig)
    refusing = Publisher(rig.redis, threshold=0)  # the results stream counts as full
    writer = Writer(rig.ledger, refusing, stop=asyncio.Event(), retry_first_s=5)
    handling = asyncio.create_task(
        writer.handle_batch(deliveries(command(transfers=[transfer(equity, alice, 5)])))
    )
    await asyncio.sleep(0.3)
    assert not handling.done()  # held in place, the batch not failed
    refusing.threshold = 10_000  # the orchestrators caught up
    # Published within the short back-pressure pause, not after the 5 s outage backoff.
    assert await asyncio.wait_for(handling, 1) == {}
    (result,) = await rig.results()
    assert result.ok and statuses(result) == ["CREATED"]


def test_the_writers_consumer_never_retries_in_place_what_the_writer_gave_back() -> None:
    # The writer waits outages out itself while it holds the lease; a batch it gives back (lease lost,
    # stopping) must be left for the active writer, not handled again here.
    settings = load_settings(CommonSettings, "", {"PM_STREAM_TRANSIENT_RETRY_S": "60"})
    clients = RedisClients(commands=Redis(), reader=Redis())
    writer = Writer(cast(Any, None), cast(Any, None))
    (consumer,) = consumers_for(
        settings, clients, group="g", consumer="c", subscriptions=handlers.subscriptions(writer)
    )
    assert consumer.transient_retry_s == 0
    (plain,) = consumers_for(
        settings,
        clients,
        group="g",
        consumer="c",
        subscriptions=[
            Subscription("pm:x", msgspec.json.Decoder(LedgerCommand), handle_batch=writer.handle_batch)
        ],
    )
    assert plain.transient_retry_s == 60
