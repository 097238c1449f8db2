"""What a chaos run reads back, as plain rows (`Facts`), and the ledger ids those rows name: the
invariants (`pm_tools.chaos.invariants`) judge them, `pm_tools.chaos.facts` fills them in, and the
unit tests fabricate them."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from pm_shared.ledger import chart, ids

WALLET_CODE = int(chart.Code.USER_WALLET)
MERCHANT_CODE = int(chart.Code.MERCHANT)
LIQUIDITY_CODE = int(chart.Code.FX_LIQUIDITY)
# The accounts whose debits may never exceed their credits, by the owner kind that holds them (PM maps
# one per owner and currency in `pm.tb_account_map`); the operator's liquidity accounts are bounded too.
BOUNDED: dict[str, int] = {"user": WALLET_CODE, "merchant": MERCHANT_CODE}
LIQUIDITY = "liquidity"
"""The owner kind of the operator's FX liquidity account of a currency (one per ledger, id "")."""
ZERO_ID = str(uuid.UUID(int=0))

Owner = tuple[str, str, str]
"""(owner kind, owner id, currency) of a user wallet (`user`), a merchant account (`merchant`) or the
operator's liquidity account (`liquidity`, id "")."""


@dataclass(frozen=True)
class IntentFact:
    id: str
    type: str
    state: str
    failure_code: str | None
    amount: int
    currency: str
    source: Mapping[str, object]
    target: Mapping[str, object]
    fees: Sequence[Mapping[str, object]] = ()
    route: Sequence[str] | None = None
    step: str | None = None
    created_at: datetime | None = None
    terminal_at: datetime | None = None
    exchange: Mapping[str, object] | None = None
    """An FX_EXCHANGE's figures as its quote priced them (`pm.intent.exchange`): quoteId, buyCurrency,
    buyAmount, principal, spread, …"""

    @property
    def holds(self) -> bool:
        """Authorizes before it settles (a top-up's route does not: its legs are made outright)."""
        return self.route is None or "authorize" in self.route


@dataclass(frozen=True)
class TransferFact:
    id: str
    """The transfer id as a UUID string (the embedded ledger's u128)."""
    intent_id: str
    """user_data_128 as a UUID string: the intent that made it."""
    amount: int
    flags: int
    ledger: int
    pending_id: str = ZERO_ID
    pending_status: int | None = None
    debit_account_id: str = ZERO_ID
    credit_account_id: str = ZERO_ID
    """The accounts it moves money between (a post or void carries its pending transfer's)."""
    code: int = 0


@dataclass(frozen=True)
class AccountFact:
    id: str
    ledger: int
    code: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int


@dataclass(frozen=True)
class PendingEntry:
    """One entry of a consumer group's pending list (XPENDING)."""

    key: str
    group: str
    entry_id: str
    consumer: str
    idle_ms: int
    deliveries: int


@dataclass(frozen=True)
class DeadLetterFact:
    dlq: str
    entry_id: str
    stream: str
    """The logical stream it came from (`pm:psp:ipps:jobs`)."""
    reason: str
    error: str
    intent_id: str | None


@dataclass(frozen=True)
class AlertFact:
    kind: str
    intent_id: str | None
    stream: str | None
    entry_id: str | None


@dataclass(frozen=True)
class PspFact:
    intent_id: str
    phase: str
    status: str | None
    failure_code: str | None


@dataclass
class Facts:
    """Everything the invariants look at, read once the run is quiet."""

    intents: dict[str, IntentFact] = field(default_factory=dict)
    transfers: list[TransferFact] = field(default_factory=list)
    accounts: list[AccountFact] = field(default_factory=list)
    owned: dict[Owner, str] = field(default_factory=dict)
    """(owner kind, owner id, currency) → the account id of every user wallet and merchant account PM
    mapped (`pm.tb_account_map`)."""
    pending: list[PendingEntry] = field(default_factory=list)
    dead_letters: list[DeadLetterFact] = field(default_factory=list)
    alerts: list[AlertFact] = field(default_factory=list)
    psp: list[PspFact] = field(default_factory=list)
    payouts: dict[str, tuple[str, int] | None] = field(default_factory=dict)
    """Withdrawal intent id → what the IPPS sandbox holds under its payout key: (status, amount) or None."""
    ipps_paid: int | None = None
    """What the IPPS sandbox paid out in all (None: not read)."""


def tid(intent_id: str, leg: str) -> str:
    """A leg's transfer id as the embedded ledger stores it (a UUID string)."""
    return str(uuid.UUID(int=ids.transfer_id(intent_id, leg)))


def account_of(owner_kind: str, owner_id: str, code: int, currency: str) -> str:
    """An account id as the embedded ledger stores it (a UUID string)."""
    return str(uuid.UUID(int=ids.account_id(owner_kind, owner_id, chart.ledger_of(currency), code)))


def wallet_account(owner_id: str, currency: str) -> str:
    return account_of("user", owner_id, WALLET_CODE, currency)


def merchant_account(merchant_id: str, currency: str) -> str:
    return account_of("merchant", merchant_id, MERCHANT_CODE, currency)


def owned_account(owner: Owner) -> str:
    """The wallet, merchant account or liquidity account of (owner kind, owner id, currency)."""
    kind, owner_id, currency = owner
    if kind == LIQUIDITY:
        return operator_account(chart.Code.FX_LIQUIDITY, currency)
    return account_of(kind, owner_id, BOUNDED[kind], currency)


def operator_account(code: chart.Code, currency: str) -> str:
    # The operator's accounts are owned by "operator", named after their code (docs/ledger.md).
    return account_of("operator", code.name.lower(), int(code), currency)


def party_account(party: Mapping[str, object], currency: str) -> str | None:
    """The account that pays or receives for one side of an intent (None: no account for it)."""
    kind, owner_id = party.get("kind"), party.get("id")
    if kind in BOUNDED and owner_id:
        return owned_account((str(kind), str(owner_id), currency))
    clearing = {
        "operator": chart.Code.OPERATOR_EQUITY,
        "promptpay": chart.Code.IPPS_CLEARING,
        "thaiqr": chart.Code.IPPS_CLEARING,
        "sbp": chart.Code.QP_CLEARING,
        LIQUIDITY: chart.Code.FX_LIQUIDITY,
    }.get(str(kind))
    return operator_account(clearing, currency) if clearing is not None else None
