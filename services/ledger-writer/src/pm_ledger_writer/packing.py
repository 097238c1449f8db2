"""Packing commands into ledger requests, and reading each command's outcome back out of the results.

A command is never split across requests, so its linked chain is applied whole or not at all. A
command that breaks the rules (an open chain, a field out of range, too many events) is refused on
its own before packing, so it can never fail the commands it would have shared a request with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import le

import tigerbeetle as tb
from msgspec.structs import astuple

from pm_shared.ledger.api import BATCH_MAX
from pm_shared.messages import LedgerAccount, LedgerCommand, LedgerEventResult, LedgerTransfer

U128 = 2**128 - 1
U64 = 2**64 - 1
U32 = 2**32 - 1
U16 = 2**16 - 1

_TRANSFER_WIDTHS = {
    "id": U128,
    "debit_account_id": U128,
    "credit_account_id": U128,
    "amount": U128,
    "pending_id": U128,
    "user_data_128": U128,
    "user_data_64": U64,
    "user_data_32": U32,
    "timeout": U32,
    "ledger": U32,
    "code": U16,
    "flags": U16,
}
_ACCOUNT_WIDTHS = {
    "id": U128,
    "user_data_128": U128,
    "user_data_64": U64,
    "user_data_32": U32,
    "ledger": U32,
    "code": U16,
    "flags": U16,
}


class CommandError(ValueError):
    """The command cannot be submitted as it is; the ledger is not asked."""


def _tops(struct: type[LedgerAccount | LedgerTransfer], widths: dict[str, int]) -> tuple[int, ...]:
    """The upper bound of each field, in the order of `msgspec.structs.astuple`."""
    assert set(struct.__struct_fields__) == set(widths)
    return tuple(widths[name] for name in struct.__struct_fields__)


# Plain ints: `flags & IntFlag` goes through the enum machinery.
_ACCOUNT_LINKED = int(tb.AccountFlags.LINKED)
_TRANSFER_LINKED = int(tb.TransferFlags.LINKED)
_TRANSFER_TOPS = _tops(LedgerTransfer, _TRANSFER_WIDTHS)
_ACCOUNT_TOPS = _tops(LedgerAccount, _ACCOUNT_WIDTHS)


def _check_fields(
    kind: str, index: int, event: LedgerAccount | LedgerTransfer, tops: tuple[int, ...]
) -> None:
    values = astuple(event)
    # The common case in one pass of C-level comparisons; the slow loop only names the culprit.
    if min(values) >= 0 and all(map(le, values, tops)):
        return
    for name, value, top in zip(event.__struct_fields__, values, tops, strict=True):
        if not 0 <= value <= top:
            raise CommandError(f"{kind} {index}: {name} = {value} is outside 0..{top}")


def _check_chain(kind: str, events: Sequence[LedgerAccount | LedgerTransfer], linked: int) -> None:
    """Events are either all independent or one chain: every event linked but the last."""
    last = len(events) - 1
    if events[last].flags & linked:
        raise CommandError(f"the {kind} chain is left open: its last event is linked")
    if last == 0:
        return
    links = [bool(e.flags & linked) for e in events[:last]]
    if any(links) and not all(links):
        raise CommandError(f"the {kind} must be one linked chain or independent events, not a mix")


def check(command: LedgerCommand, batch_max: int = BATCH_MAX) -> None:
    """Raise CommandError when `command` breaks the rules of a command."""
    accounts, transfers = command.accounts, command.transfers
    if not accounts and not transfers:
        raise CommandError("the command has no accounts and no transfers")
    if len(accounts) > batch_max or len(transfers) > batch_max:
        raise CommandError(f"a command holds at most {batch_max} accounts and {batch_max} transfers")
    for i, account in enumerate(accounts):
        _check_fields("account", i, account, _ACCOUNT_TOPS)
    for i, transfer in enumerate(transfers):
        _check_fields("transfer", i, transfer, _TRANSFER_TOPS)
    if accounts:
        _check_chain("accounts", accounts, _ACCOUNT_LINKED)
    if transfers:
        _check_chain("transfers", transfers, _TRANSFER_LINKED)


# Flag values seen so far: an enum call per event is a measurable share of the writer's time.
_ACCOUNT_FLAGS: dict[int, tb.AccountFlags] = {}
_TRANSFER_FLAGS: dict[int, tb.TransferFlags] = {}


def _account_flags(value: int) -> tb.AccountFlags:
    flags = _ACCOUNT_FLAGS.get(value)
    if flags is None:
        flags = _ACCOUNT_FLAGS[value] = tb.AccountFlags(value)
    return flags


def _transfer_flags(value: int) -> tb.TransferFlags:
    flags = _TRANSFER_FLAGS.get(value)
    if flags is None:
        flags = _TRANSFER_FLAGS[value] = tb.TransferFlags(value)
    return flags


def to_account(a: LedgerAccount) -> tb.Account:
    return tb.Account(
        id=a.id,
        user_data_128=a.user_data_128,
        user_data_64=a.user_data_64,
        user_data_32=a.user_data_32,
        ledger=a.ledger,
        code=a.code,
        flags=_account_flags(a.flags),
    )


def to_transfer(t: LedgerTransfer) -> tb.Transfer:
    # Positional: both types list the same fields in the same order (checked below), and building
    # the client's Transfer is done once per transfer the writer handles.
    ident, debit, credit, amount, pending, ud128, ud64, ud32, timeout, ledger, code, flags = astuple(t)
    return tb.Transfer(
        ident,
        debit,
        credit,
        amount,
        pending,
        ud128,
        ud64,
        ud32,
        timeout,
        ledger,
        code,
        _transfer_flags(flags),
    )


if LedgerTransfer.__struct_fields__ != tuple(f.name for f in dataclasses.fields(tb.Transfer))[:-1]:
    raise ImportError("LedgerTransfer no longer lists tigerbeetle.Transfer's fields in its order")


@dataclass
class Batch:
    """One `create_accounts` and one `create_transfers` request, and whose events are where."""

    commands: list[LedgerCommand] = field(default_factory=list)
    accounts: list[tb.Account] = field(default_factory=list)
    transfers: list[tb.Transfer] = field(default_factory=list)
    # Per command: where its accounts and transfers start in the two requests.
    account_offsets: list[int] = field(default_factory=list)
    transfer_offsets: list[int] = field(default_factory=list)

    def fits(self, command: LedgerCommand, batch_max: int) -> bool:
        return (
            len(self.accounts) + len(command.accounts) <= batch_max
            and len(self.transfers) + len(command.transfers) <= batch_max
        )

    def add(self, command: LedgerCommand) -> None:
        self.commands.append(command)
        self.account_offsets.append(len(self.accounts))
        self.transfer_offsets.append(len(self.transfers))
        if command.accounts:
            self.accounts.extend([to_account(a) for a in command.accounts])
        self.transfers.extend([to_transfer(t) for t in command.transfers])


class Packer:
    """Fills requests in order, each up to `batch_max` events per operation; a command stays whole."""

    def __init__(self, batch_max: int = BATCH_MAX) -> None:
        self.batch_max = batch_max
        self.batches: list[Batch] = []
        self._current = Batch()

    def add(self, command: LedgerCommand) -> None:
        if not self._current.fits(command, self.batch_max):
            self.batches.append(self._current)
            self._current = Batch()
        self._current.add(command)

    def finish(self) -> list[Batch]:
        if self._current.commands:
            self.batches.append(self._current)
            self._current = Batch()
        return self.batches


def pack(commands: Sequence[LedgerCommand], batch_max: int = BATCH_MAX) -> list[Batch]:
    packer = Packer(batch_max)
    for command in commands:
        packer.add(command)
    return packer.finish()


# A retried command whose chain was already committed answers [EXISTS, LINKED_EVENT_FAILED, …]
# (as TigerBeetle does): the head exists, so the chain is tested with a lookup rather than trusted.
_EXISTS = "EXISTS"
_LINKED_FAILED = "LINKED_EVENT_FAILED"
_SUCCESS = frozenset({"CREATED", _EXISTS})


def result_message_id(command: LedgerCommand) -> str:
    """The same for every retry of `command`, so the orchestrator sees one result however often it is sent."""
    return f"{command.message_id}:result"


def is_committed_chain_retry(statuses: Sequence[str]) -> bool:
    return len(statuses) > 1 and statuses[0] == _EXISTS and all(s == _LINKED_FAILED for s in statuses[1:])


def all_succeeded(events: Sequence[LedgerEventResult]) -> bool:
    for event in events:  # noqa: SIM110 (a plain loop: it runs for every command; a generator costs more)
        if event.status not in _SUCCESS:
            return False
    return True
