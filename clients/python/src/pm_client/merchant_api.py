"""The HTTP contract of merchants, their mini-apps and payment requests (docs/api.md, "Merchants",
"Mini-apps", "Payment requests"): request and response bodies as msgspec Structs, built on the
shared pieces of `pm_client.api` (ids, amounts, currencies, text rules)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from pm_client.api import LINE_PATTERN, Amount, Currency, Id, Out, Struct

# --- admin: merchants -----------------------------------------------------------------------------

MerchantName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=LINE_PATTERN)]


class CreateMerchant(Struct, kw_only=True):
    """`POST /v1/admin/merchants` (with an `Idempotency-Key` header): the merchant, its service key
    and its ledger accounts (one per currency), as one idempotent operation."""

    merchant_id: Id
    name: MerchantName
    currencies: Annotated[
        list[Currency], msgspec.Meta(min_length=1, max_length=3, extra_json_schema={"uniqueItems": True})
    ]

    def __post_init__(self) -> None:
        if len(set(self.currencies)) != len(self.currencies):
            raise ValueError("each currency once")


class MerchantAccount(Out, kw_only=True):
    currency: str
    account_id: str
    """The ledger account's id, 32 lower-case hex digits."""
    opened: bool
    """False while the ledger-writer has not opened it yet (the onboarding answered 202)."""


class MerchantEvent(Out, kw_only=True):
    at: datetime
    action: str
    """created, deactivated, reactivated, secret_rotated, accounts_closed or accounts_reopened."""
    actor: str


class Merchant(Out, kw_only=True):
    merchant_id: str
    name: str
    status: Literal["ACTIVE", "INACTIVE"]
    key_id: str
    currencies: list[str]
    accounts: list[MerchantAccount]
    created_at: datetime
    deactivated_at: datetime | None = None
    accounts_state: Literal["OPEN", "CLOSING", "CLOSED", "REOPENING"] = "OPEN"
    """Its ledger accounts: OPEN; CLOSED (deactivated, balances moved to the suspense account, every
    transfer refused) after `close-accounts`; CLOSING and REOPENING while the ledger-writer works."""
    events: list[MerchantEvent] = []


class OnboardedMerchant(Merchant, kw_only=True):
    """The answer to an onboarding (and to its replays, with the same Idempotency-Key, by the same
    admin key): the merchant and its key's secret, which no other answer shows."""

    secret: str


# --- admin: mini-apps -----------------------------------------------------------------------------

MiniappOperation = Literal["MINIAPP_CHARGE", "MINIAPP_CREDIT"]


class CreateMiniapp(Struct, kw_only=True):
    """`POST /v1/admin/miniapps`: a merchant's mini-app in the catalog (the same definition again is
    the same mini-app; another under the same id is 409 `miniapp_exists`)."""

    miniapp_id: Id
    merchant_id: Id
    name: MerchantName
    operations: Annotated[
        list[MiniappOperation],
        msgspec.Meta(min_length=1, max_length=2, extra_json_schema={"uniqueItems": True}),
    ]
    max_charge: Annotated[
        dict[Currency, Amount],
        msgspec.Meta(extra_json_schema={"propertyNames": {"enum": ["THB", "USD", "RUB"]}}),
    ] = {}
    """The most one charge may be, per currency (minor units); a currency not named is not capped."""

    def __post_init__(self) -> None:
        if len(set(self.operations)) != len(self.operations):
            raise ValueError("each operation once")


class Miniapp(Out, kw_only=True):
    miniapp_id: str
    merchant_id: str
    name: str
    status: Literal["ACTIVE", "INACTIVE"]
    operations: list[str]
    max_charge: dict[str, int]
    created_at: datetime
    deactivated_at: datetime | None = None


# --- payment requests: a merchant asks, the user confirms -----------------------------------------

PaymentRequestStatus = Literal["OPEN", "CONFIRMED", "DECLINED", "EXPIRED"]


class CreatePaymentRequest(Struct, kw_only=True):
    """`POST /v1/payment-requests` (a merchant's key, with an `Idempotency-Key`): ask a user to pay
    through one of the merchant's mini-apps. Nothing moves until the user confirms it."""

    miniapp_id: Id
    user_id: Id
    amount: Amount
    currency: Currency
    description: Annotated[str, msgspec.Meta(max_length=200, pattern=LINE_PATTERN)] = ""
    expires_in_s: Annotated[int, msgspec.Meta(ge=30, le=7 * 86_400)] = 900
    """How long the user has to confirm (30 s to 7 days; 15 minutes by default)."""


class PaymentRequest(Out, kw_only=True):
    id: str
    status: PaymentRequestStatus
    merchant_id: str
    miniapp_id: str
    user_id: str
    amount: int
    currency: str
    description: str = ""
    intent_id: str | None = None
    """The MINIAPP_CHARGE intent the confirmation made (CONFIRMED only)."""
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
