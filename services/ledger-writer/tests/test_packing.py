"""Packing commands into ledger requests: chains never split, results mapped back to the right command."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
import tigerbeetle as tb

from pm_ledger_writer.outcomes import outcomes
from pm_ledger_writer.packing import CommandError, check, is_committed_chain_retry, pack
from pm_shared.messages import LedgerAccount, LedgerCommand, LedgerTransfer, new_message_id, now

L = int(tb.TransferFlags.LINKED)


def command(n: int, *, chain: bool = False, start: int = 1, accounts: int = 0) -> LedgerCommand:
    transfers = [
        LedgerTransfer(
            id=start + i,
            debit_account_id=1,
            credit_account_id=2,
            amount=1,
            ledger=1,
            code=1,
            flags=L if chain and i < n - 1 else 0,
        )
        for i in range(n)
    ]
    opened = [LedgerAccount(id=10_000_000 + start + i, ledger=1, code=1) for i in range(accounts)]
    return LedgerCommand(
        intent_id=f"intent-{start}",
        message_id=new_message_id(),
        produced_at=now(),
        step="authorize",
        transfers=transfers,
        accounts=opened,
    )


def test_commands_fill_requests_in_order_and_stay_whole() -> None:
    commands = [
        command(5000, chain=True, start=1),
        command(3000, start=10_000),
        command(1000, chain=True, start=20_000),
    ]
    batches = pack(commands, batch_max=8189)
    assert [len(b.transfers) for b in batches] == [8000, 1000]
    assert [len(b.commands) for b in batches] == [2, 1]
    assert batches[0].transfer_offsets == [0, 5000]
    first = batches[0]
    assert [t.id for t in first.transfers[5000:8000]] == [t.id for t in commands[1].transfers]


@pytest.mark.parametrize(
    ("sizes", "expected"), [((8000, 189), [8189]), ((8000, 190), [8000, 190]), ((8189,), [8189])]
)
def test_the_8189_boundary(sizes: tuple[int, ...], expected: list[int]) -> None:
    commands = [command(n, chain=True, start=100_000 * (i + 1)) for i, n in enumerate(sizes)]
    assert [len(b.transfers) for b in pack(commands)] == expected


def test_accounts_and_transfers_are_counted_separately() -> None:
    batches = pack([command(1, accounts=8000, start=1), command(1, accounts=189, start=50_000)])
    assert [(len(b.accounts), len(b.transfers)) for b in batches] == [(8189, 2)]


@pytest.mark.parametrize(
    ("cmd", "message"),
    [
        (command(0), "no accounts and no transfers"),
        (command(8190, start=1), "at most 8189"),
    ],
)
def test_commands_that_break_the_rules_are_refused(cmd: LedgerCommand, message: str) -> None:
    with pytest.raises(CommandError, match=message):
        check(cmd)


def _with(cmd: LedgerCommand, **changes: Any) -> LedgerCommand:
    transfers = [msgspec.structs.replace(cmd.transfers[0], **changes), *cmd.transfers[1:]]
    return msgspec.structs.replace(cmd, transfers=transfers)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"amount": -1}, "amount"),
        ({"amount": 2**128}, "amount"),
        ({"code": 2**16}, "code"),
        ({"ledger": 2**32}, "ledger"),
    ],
)
def test_fields_out_of_range_are_refused_before_they_reach_the_ledger(
    changes: dict[str, int], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        check(_with(command(2), **changes))


def test_chains_must_be_closed_and_whole() -> None:
    open_chain = _with(command(1), flags=L)
    with pytest.raises(CommandError, match="open"):
        check(open_chain)
    mixed = command(3, chain=True)
    mixed = msgspec.structs.replace(
        mixed, transfers=[mixed.transfers[0], _with(command(1), flags=0).transfers[0], mixed.transfers[2]]
    )
    with pytest.raises(CommandError, match="mix"):
        check(mixed)
    check(command(3, chain=True))
    check(command(3))


def test_committed_chain_retry_is_recognised() -> None:
    assert is_committed_chain_retry(["EXISTS", "LINKED_EVENT_FAILED", "LINKED_EVENT_FAILED"])
    assert not is_committed_chain_retry(["EXISTS"])
    assert not is_committed_chain_retry(["LINKED_EVENT_FAILED", "EXCEEDS_CREDITS"])
    assert not is_committed_chain_retry(["EXISTS", "CREATED"])


class NoLookups:
    """Outcomes that need no chain confirmation must not ask the ledger anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected ledger call {name}")


async def test_each_command_gets_its_own_results_in_order() -> None:
    a, b = command(2, chain=True, start=1), command(2, start=100)
    (batch,) = pack([a, b])
    statuses = [
        tb.CreateTransferStatus.CREATED,
        tb.CreateTransferStatus.CREATED,
        tb.CreateTransferStatus.EXISTS,
        tb.CreateTransferStatus.EXCEEDS_CREDITS,
    ]
    results = [tb.CreateTransferResult(timestamp=10 + i, status=s) for i, s in enumerate(statuses)]
    first, second = await outcomes(NoLookups(), batch, [], results)
    assert first.ok and [e.status for e in first.transfers] == ["CREATED", "CREATED"]
    assert [e.id for e in first.transfers] == [1, 2]
    assert not second.ok and [e.status for e in second.transfers] == ["EXISTS", "EXCEEDS_CREDITS"]
    assert (first.command_id, second.command_id) == (a.message_id, b.message_id)
    assert first.message_id == f"{a.message_id}:result"
