"""Packing commands into ledger requests, and reading each command's outcome back out of the results.

A command is never split across requests, so its linked chain is applied whole or not at all. A
command that breaks the rules (an open chain, a field out of range, too many events) is refused on
its own before packing, so it can never fail the commands it would have shared a request with.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

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


YIELD_EVENTS = 1024
"""Events a loop over a batch's commands (packing them, reading their results) handles between two
turns of the event loop: the ledger request in flight then goes on within a millisecond or so of its
answer, rather than after the whole loop (see `pm_shared.streams.concurrency.take_turns`)."""


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


def _out_of_range(kind: str, index: int, event: LedgerAccount | LedgerTransfer, tops: tuple[int, ...]) -> str:
    """What is wrong with `event`, whose fields are known not all to fit (the slow path)."""
    for name, value, top in zip(event.__struct_fields__, astuple(event), tops, strict=True):
        if not 0 <= value <= top:
            return f"{kind} {index}: {name} = {value} is outside 0..{top}"
    raise AssertionError("every field of the event fits")  # pragma: no cover


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


def _check_sizes(command: LedgerCommand, batch_max: int) -> None:
    accounts, transfers = command.accounts, command.transfers
    if not accounts and not transfers:
        raise CommandError("the command has no accounts and no transfers")
    if len(accounts) > batch_max or len(transfers) > batch_max:
        raise CommandError(f"a command holds at most {batch_max} accounts and {batch_max} transfers")


def check(command: LedgerCommand, batch_max: int = BATCH_MAX) -> None:
    """Raise CommandError when `command` breaks the rules of a command (what `Packer.take` refuses)."""
    error = Packer(batch_max).take(command)
    if error is not None:
        raise CommandError(error)


# Flag values seen so far: an enum call per event is a measurable share of the writer's time.
_ACCOUNT_FLAGS: dict[int, tb.AccountFlags] = {}
_TRANSFER_FLAGS: dict[int, tb.TransferFlags] = {}


def _account(a: LedgerAccount, index: int) -> tb.Account:
    """`a` as the client's Account; CommandError when a field does not fit."""
    ident, ledger, code, flags, ud128, ud64, ud32 = astuple(a)
    if (ident | ud128) >> 128 or ud64 >> 64 or (ud32 | ledger) >> 32 or (code | flags) >> 16:
        raise CommandError(_out_of_range("account", index, a, _ACCOUNT_TOPS))
    typed = _ACCOUNT_FLAGS.get(flags)
    if typed is None:
        typed = _ACCOUNT_FLAGS[flags] = tb.AccountFlags(flags)
    return tb.Account(
        id=ident,
        user_data_128=ud128,
        user_data_64=ud64,
        user_data_32=ud32,
        ledger=ledger,
        code=code,
        flags=typed,
    )


def _transfer(t: LedgerTransfer, index: int) -> tb.Transfer:
    """`t` as the client's Transfer; CommandError when a field does not fit.

    Built once per transfer the writer handles, so the range check is one expression over the
    unpacked fields (a negative value, or one wider than its field, leaves bits above the width) and
    the Transfer is built positionally (both types list the same fields in the same order).
    """
    ident, debit, credit, amount, pending, ud128, ud64, ud32, timeout, ledger, code, flags = astuple(t)
    if (
        (ident | debit | credit | amount | pending | ud128) >> 128
        or ud64 >> 64
        or (ud32 | timeout | ledger) >> 32
        or (code | flags) >> 16
    ):
        raise CommandError(_out_of_range("transfer", index, t, _TRANSFER_TOPS))
    typed = _TRANSFER_FLAGS.get(flags)
    if typed is None:
        typed = _TRANSFER_FLAGS[flags] = tb.TransferFlags(flags)
    return tb.Transfer(ident, debit, credit, amount, pending, ud128, ud64, ud32, timeout, ledger, code, typed)


def to_account(a: LedgerAccount) -> tb.Account:
    return _account(a, 0)


def to_transfer(t: LedgerTransfer) -> tb.Transfer:
    return _transfer(t, 0)


# The widths `_account` and `_transfer` test, in the order of their fields.
if _ACCOUNT_TOPS != (U128, U32, U16, U16, U128, U64, U32) or _TRANSFER_TOPS != (
    (U128,) * 6 + (U64, U32, U32, U32, U16, U16)
):
    raise ImportError("LedgerAccount or LedgerTransfer no longer lists its fields in the order packed here")
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


class Packer:
    """Fills requests in order, each up to `batch_max` events per operation; a command stays whole."""

    def __init__(self, batch_max: int = BATCH_MAX) -> None:
        self.batch_max = batch_max
        self.batches: list[Batch] = []
        self._current = Batch()

    def take(self, command: LedgerCommand) -> str | None:
        """Check `command` (as `check` does) and pack it: None, or what is wrong with it (then it is
        not packed). One pass over its events does both."""
        transfers = command.transfers
        try:
            if len(transfers) == 1 and not command.accounts:
                # The common command, without the loops: a single transfer must not be linked.
                events = [_transfer(transfers[0], 0)]
                if transfers[0].flags & _TRANSFER_LINKED:
                    raise CommandError("the transfers chain is left open: its last event is linked")
                self._add(command, (), events)
                return None
            _check_sizes(command, self.batch_max)
            accounts = [_account(a, i) for i, a in enumerate(command.accounts)]
            events = [_transfer(t, i) for i, t in enumerate(transfers)]
            if accounts:
                _check_chain("accounts", command.accounts, _ACCOUNT_LINKED)
            if events:
                _check_chain("transfers", transfers, _TRANSFER_LINKED)
        except CommandError as exc:
            return str(exc)
        self._add(command, accounts, events)
        return None

    def add(self, command: LedgerCommand) -> None:
        """Pack `command`; CommandError when it breaks the rules of a command."""
        error = self.take(command)
        if error is not None:
            raise CommandError(error)

    def _add(
        self, command: LedgerCommand, accounts: Sequence[tb.Account], transfers: list[tb.Transfer]
    ) -> None:
        batch = self._current
        if (
            len(batch.accounts) + len(accounts) > self.batch_max
            or len(batch.transfers) + len(transfers) > self.batch_max
        ):
            self.batches.append(batch)
            batch = self._current = Batch()
        batch.commands.append(command)
        batch.account_offsets.append(len(batch.accounts))
        batch.transfer_offsets.append(len(batch.transfers))
        if accounts:
            batch.accounts += accounts
        batch.transfers += transfers

    def finish(self) -> list[Batch]:
        if self._current.commands:
            self.batches.append(self._current)
            self._current = Batch()
        return self.batches


def pack(commands: Sequence[LedgerCommand], batch_max: int = BATCH_MAX) -> list[Batch]:
    """`commands` packed whole into requests; CommandError for one that breaks the rules."""
    packer = Packer(batch_max)
    for command in commands:
        packer.add(command)
    return packer.finish()


# A retried command whose chain was already committed answers [EXISTS, LINKED_EVENT_FAILED, …]
# (as TigerBeetle does): the head exists, so the chain is tested with a lookup rather than trusted.
_EXISTS = "EXISTS"
_LINKED_FAILED = "LINKED_EVENT_FAILED"
SUCCESS = frozenset({"CREATED", _EXISTS})
"""The statuses of an event that is in the ledger as sent."""


def result_message_id(command: LedgerCommand) -> str:
    """The same for every retry of `command`, so the orchestrator sees one result however often it is sent."""
    return f"{command.message_id}:result"


def is_committed_chain_retry(statuses: Sequence[str]) -> bool:
    return len(statuses) > 1 and statuses[0] == _EXISTS and all(s == _LINKED_FAILED for s in statuses[1:])


def all_succeeded(events: Sequence[LedgerEventResult]) -> bool:
    for event in events:  # noqa: SIM110 (a plain loop: it runs for every command; a generator costs more)
        if event.status not in SUCCESS:
            return False
    return True
