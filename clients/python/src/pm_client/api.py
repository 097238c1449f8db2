"""The gateway's HTTP contract (docs/api.md): every request and response body, as msgspec Structs.

One definition serves the gateway (decoding and validating requests, encoding responses), the
client (`pm_client.client`) and `GET /openapi.json`, which is generated from these types. JSON is
camelCase; amounts are integers in minor units. Fields may be added (with defaults); the ones here
may not change meaning.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal, get_args

import msgspec

# --- shared pieces ------------------------------------------------------------------------------

AMOUNT_MAX = 10**12
"""The largest amount accepted in one intent, in minor units (10,000,000,000.00 THB)."""

Amount = Annotated[
    int,
    msgspec.Meta(
        gt=0,
        le=AMOUNT_MAX,
        description=(
            "Minor units (satang, cents, kopecks): an integer written without a fraction or exponent "
            "(4315, not 4315.0 or 4.315e3, which are refused)."
        ),
    ),
]
Currency = Annotated[
    Literal["THB", "USD", "RUB"],
    msgspec.Meta(description="ISO 4217 code of a currency PM keeps a ledger for."),
]
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}(?!\n)$"
"""Every id a client names (owners, keys, rules; merchants and mini-apps to come): 1–64 characters
of ASCII letters, digits, `_ . : -`, a letter or digit first (so never `.` or `..`)."""
Id = Annotated[
    str, msgspec.Meta(pattern=ID_PATTERN, description="1–64 of A-Z a-z 0-9 _ . : -, alphanumeric first.")
]
OwnerId = Id
# Every pattern ends `(?!\n)$`: Python's `$` (msgspec checks with `re.search`) also matches before a
# final newline, ECMA-262's (the JSON Schema reading) does not; with the lookahead both refuse "id\n".
# Free text is stored in PostgreSQL, which holds no NUL character in text or jsonb: NUL is refused
# everywhere; single-line text (names, keys, references) refuses every C0 control character and DEL.
TEXT_PATTERN = r"^[^\u0000]*$"
LINE_PATTERN = r"^[^\u0000-\u001f\u007f]*(?!\n)$"
DisplayName = Annotated[str, msgspec.Meta(max_length=100, pattern=LINE_PATTERN)]
Comment = Annotated[str, msgspec.Meta(max_length=500, pattern=TEXT_PATTERN)]
MetadataKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=LINE_PATTERN)]
MetadataValue = Annotated[str, msgspec.Meta(max_length=256, pattern=TEXT_PATTERN)]
Description = Annotated[str, msgspec.Meta(max_length=200, pattern=TEXT_PATTERN)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], msgspec.Meta(max_length=20)]

IntentType = Literal[
    "P2P",
    "PROMPTPAY_WITHDRAWAL",
    "SBP_TOPUP",
    "ADJUSTMENT",
    "MINIAPP_CHARGE",
    "MINIAPP_CREDIT",
    "FX_EXCHANGE",
    "REFUND",
]
INTENT_TYPES: tuple[str, ...] = get_args(IntentType)
MINIAPP_TYPES = frozenset({"MINIAPP_CHARGE", "MINIAPP_CREDIT"})
"""Made through a mini-app, by its merchant's key only (a charge only from a payment request the
user confirms)."""
IntentState = Literal["CREATED", "VALIDATED", "AUTHORIZED", "SETTLED", "FAILED"]
TERMINAL_STATES = frozenset({"SETTLED", "FAILED"})


class Struct(msgspec.Struct, kw_only=True, rename="camel", forbid_unknown_fields=True):
    """Base of request bodies: camelCase, and an unknown field is an error, not silently dropped."""


class Out(msgspec.Struct, kw_only=True, rename="camel"):
    """Base of response bodies: camelCase; clients must ignore fields they do not know."""


# --- parties ------------------------------------------------------------------------------------


class UserParty(Struct, kw_only=True, tag="user", tag_field="kind"):
    id: OwnerId


class OperatorParty(Struct, kw_only=True, tag="operator", tag_field="kind"):
    """The operator's own accounts (equity): one side of an ADJUSTMENT."""


class SbpParty(Struct, kw_only=True, tag="sbp", tag_field="kind"):
    """The payer of an SBP top-up: whoever pays the QR the intent answers with."""


class PromptPayParty(Struct, kw_only=True, tag="promptpay", tag_field="kind"):
    """A PromptPay payee: a credit-transfer proxy (Tag 29) or a biller (Tag 30, with references)."""

    proxy_type: Literal["MSISDN", "NATID", "EWALLET", "BILLER"]
    proxy_value: Annotated[str, msgspec.Meta(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z]+(?!\n)$")]
    ref1: Annotated[str, msgspec.Meta(max_length=20, pattern=LINE_PATTERN)] | None = None
    ref2: Annotated[str, msgspec.Meta(max_length=20, pattern=LINE_PATTERN)] | None = None


class ThaiQrParty(Struct, kw_only=True, tag="thaiqr", tag_field="kind"):
    """A scanned Thai QR (EMVCo) string."""

    payload: Annotated[str, msgspec.Meta(min_length=20, max_length=512, pattern=LINE_PATTERN)]


class MerchantParty(Struct, kw_only=True, tag="merchant", tag_field="kind"):
    """A merchant's account (code 2) in the intent's currency: one side of a MINIAPP_* intent, or of
    an ADJUSTMENT that funds it."""

    id: Id


class LiquidityParty(Struct, kw_only=True, tag="liquidity", tag_field="kind"):
    """The operator's FX liquidity account (code 30) in the intent's currency: one side of an
    ADJUSTMENT that funds it (or takes from it)."""


Party = UserParty | OperatorParty | SbpParty | PromptPayParty | ThaiQrParty | MerchantParty | LiquidityParty


# --- intents ------------------------------------------------------------------------------------


class CreateIntent(Struct, kw_only=True):
    """`POST /v1/intents` (with an `Idempotency-Key` header).

    Checked beyond the schema (422 `invalid_parties`): the parties fit the type (P2P: user → user;
    PROMPTPAY_WITHDRAWAL: user → promptpay or thaiqr; SBP_TOPUP: sbp → user; ADJUSTMENT: operator →
    user or user → operator, admin keys only); a user never pays themselves; a BILLER payee needs
    `ref1`, other proxies take no references. A `thaiqr` payee must parse (422 `invalid_thai_qr`),
    pay THB, and carry the intent's amount if it has one (422 `qr_amount_mismatch`).
    """

    type: IntentType
    amount: Amount
    currency: Currency
    from_: Party = msgspec.field(name="from")
    to: Party
    from_name: DisplayName | None = None
    to_name: DisplayName | None = None
    comment: Comment | None = None
    requires_monitoring: bool = False
    metadata: Metadata = {}
    miniapp_id: Id | None = None
    """The mini-app a MINIAPP_* intent is made through (required for those, refused for others)."""
    quote_id: uuid.UUID | None = None
    """The FX quote an FX_EXCHANGE carries out (required for it, refused for others): `amount` and
    `currency` are what the quote sells, and the intent's id is the quote's."""
    original_intent_id: uuid.UUID | None = None
    """The intent a REFUND gives money back for (required for it, refused for others)."""

    def __post_init__(self) -> None:
        if (self.type in MINIAPP_TYPES) != (self.miniapp_id is not None):
            raise ValueError("miniappId is required for MINIAPP_* intents and only for them")
        if (self.type == "FX_EXCHANGE") != (self.quote_id is not None):
            raise ValueError("quoteId is required for FX_EXCHANGE and only for it")
        if (self.type == "REFUND") != (self.original_intent_id is not None):
            raise ValueError("originalIntentId is required for REFUND and only for it")


MyIntentType = Literal["P2P", "PROMPTPAY_WITHDRAWAL"]


class CreateMyIntent(Struct, kw_only=True):
    """`POST /v1/me/intents` (with an `Idempotency-Key` header): an end user pays from their own wallet.

    The payer is the user the front door vouched for (`X-PM-User`); the body never names it. Checked
    as `CreateIntent` is (the payee fits the type, a user never pays themselves, Thai QR rules).
    """

    type: MyIntentType
    amount: Amount
    currency: Currency
    to: UserParty | PromptPayParty | ThaiQrParty
    to_name: DisplayName | None = None
    comment: Comment | None = None
    metadata: Metadata = {}

    def intent(self, user_id: str) -> CreateIntent:
        """The intent this asks for, paid by `user_id`."""
        return CreateIntent(
            type=self.type,
            amount=self.amount,
            currency=self.currency,
            from_=UserParty(id=user_id),
            to=self.to,
            to_name=self.to_name,
            comment=self.comment,
            metadata=self.metadata,
        )


class Fee(Out, kw_only=True):
    rule_id: str
    rule_version: int
    amount: int
    currency: str
    timing: Literal["PRE", "POST"]


class Leg(Out, kw_only=True):
    """One ledger transfer of the intent."""

    name: str
    transfer_id: str
    amount: int
    state: str


class TimelineEntry(Out, kw_only=True):
    at: datetime
    state: str
    previous: str | None = None
    reason: str | None = None


class Links(Out, kw_only=True):
    self_: str = msgspec.field(name="self")


class Payment(Out, kw_only=True):
    """What the payer must do for the intent to go on: for an SBP top-up, pay the QR behind `link`."""

    kind: str
    """`qp_qr`: an SBP QR (`link` is its `qr.nspk.ru` URL, to show as a QR code or open on a phone)."""
    link: str
    expires_at: datetime | None = None
    psp_reference: str | None = None


class Exchange(Out, kw_only=True):
    """What an FX_EXCHANGE moves, as its quote priced it: `amount` (in `currency`) leaves the wallet,
    of which `spread` goes to fee revenue and `principal` is exchanged into `buyAmount` of
    `buyCurrency`."""

    quote_id: str
    buy_currency: str
    buy_amount: int
    principal: int
    spread: int
    rate: str
    pair: str
    spread_bps: int


class Intent(Out, kw_only=True):
    """An intent as the API shows it (`POST` answers with it; `GET` adds legs and the timeline)."""

    id: str
    status: IntentState
    type: str
    amount: int
    currency: str
    from_: Party = msgspec.field(name="from")
    to: Party
    fees: list[Fee] = []
    failure_code: str | None = None
    from_name: str | None = None
    to_name: str | None = None
    comment: str | None = None
    requires_monitoring: bool = False
    metadata: dict[str, str] = {}
    created_at: datetime | None = None
    updated_at: datetime | None = None
    legs: list[Leg] = []
    payment: Payment | None = None
    """Set once a PSP says what the payer must do (an SBP top-up's QR link); null otherwise."""
    miniapp_id: str | None = None
    exchange: Exchange | None = None
    original_intent_id: str | None = None
    """A REFUND's original intent."""
    timeline: list[TimelineEntry] = []
    links: Links


class IntentPage(Out, kw_only=True):
    items: list[Intent]
    next_cursor: str | None = None


# --- wallets ------------------------------------------------------------------------------------


class OpenWallet(Struct, kw_only=True):
    """`POST /v1/wallets`."""

    owner_kind: Literal["user"]
    owner_id: OwnerId
    currency: Currency


class Balance(Out, kw_only=True):
    currency: str
    available: int
    """What the owner can spend: posted credits less posted and pending debits."""
    pending: int
    """Debits reserved by intents in flight (authorized, not yet settled)."""
    posted: int
    """Posted credits less posted debits."""


class Wallet(Out, kw_only=True):
    owner_id: str
    balances: list[Balance]


class HistoryEntry(Out, kw_only=True):
    intent_id: str
    type: str
    direction: Literal["in", "out"]
    amount: int
    currency: str
    fee: int = 0
    counterparty_name: str | None = None
    comment: str | None = None
    requires_monitoring: bool = False
    at: datetime
    original_intent_id: str | None = None
    """A refund's original intent (the charge or withdrawal it gives back), beside it in the history."""


class HistoryPage(Out, kw_only=True):
    items: list[HistoryEntry]
    next_cursor: str | None = None


# --- errors -------------------------------------------------------------------------------------


class FieldError(Out, kw_only=True):
    path: str
    message: str


class Problem(Out, kw_only=True):
    """`application/problem+json` (RFC 9457) with PM's stable `code`."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    instance: str | None = None
    request_id: str | None = None
    errors: list[FieldError] = []


# --- admin: service keys --------------------------------------------------------------------------


class KeyPermissions(Out, kw_only=True):
    operations: list[str]
    owners: list[str] | None = None
    """None: the key may act for any owner."""
    admin: bool = False
    merchant: str | None = None
    """A merchant's key: the merchant whose account and mini-apps it may touch."""


class CreateKey(Struct, kw_only=True):
    """`POST /v1/admin/keys`."""

    operations: Annotated[
        list[Literal["P2P", "PROMPTPAY_WITHDRAWAL", "SBP_TOPUP", "ADJUSTMENT", "FX_EXCHANGE", "*"]],
        msgspec.Meta(min_length=1),
    ]
    """MINIAPP_* are not among them: a merchant's key is made by onboarding the merchant."""
    owners: Annotated[list[OwnerId], msgspec.Meta(max_length=1000)] | None = None
    admin: bool = False
    description: Description = ""

    def __post_init__(self) -> None:
        if {"ADJUSTMENT", "*"} & set(self.operations) and not self.admin:
            raise ValueError("ADJUSTMENT (and so '*') is for admin keys only")


class RotateKey(Struct, kw_only=True):
    """`POST /v1/admin/keys/{keyId}/rotate`: the previous secret stays valid for `graceSeconds`."""

    grace_seconds: Annotated[int, msgspec.Meta(ge=0, le=30 * 86_400)] = 86_400


class ServiceKeyInfo(Out, kw_only=True):
    key_id: str
    status: str
    permissions: KeyPermissions
    description: str = ""
    created_at: datetime
    rotated_at: datetime | None = None
    deactivated_at: datetime | None = None
    last_used_at: datetime | None = None
    previous_valid_until: datetime | None = None


class ServiceKeySecret(Out, kw_only=True):
    """The only answer that carries a secret: store it now, it is never shown again."""

    key_id: str
    secret: str
    key: ServiceKeyInfo


# --- admin: fee rules, limit rules, routes; fee dry-run --------------------------------------------

YEARS = (1970, 9998)
"""The years (as written, whatever the offset) a time given to PM may fall in: every such instant is
one Python and PostgreSQL hold (9999-12-31T23:59:59-14:00 is in the year 10000 in UTC)."""
AwareDatetime = Annotated[
    datetime,
    msgspec.Meta(
        tz=True,
        description="RFC 3339 with an offset (e.g. Z), in the years 1970 to 9998.",
        # JSON Schema's reading of the range: the year as written.
        extra_json_schema={
            "pattern": r"^(?:19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-"
        },
    ),
]


def _in_range(name: str, value: datetime | None) -> None:
    if value is not None and not YEARS[0] <= value.year <= YEARS[1]:
        raise ValueError(f"{name} must be in the years {YEARS[0]} to {YEARS[1]}")


RULE_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,62}(?!\n)$"
RuleId = Annotated[
    str,
    msgspec.Meta(
        pattern=RULE_ID_PATTERN,
        description="1–63 of a-z 0-9 _ . -, alphanumeric first: an id, lower-case (the rule tables' CHECK).",
    ),
]
Expression = Annotated[str, msgspec.Meta(min_length=1, max_length=2000, pattern=TEXT_PATTERN)]


class FeeRuleIn(Struct, kw_only=True):
    """`POST /v1/admin/fee-rules`: a new rule, or the next version of an existing `ruleId`.

    `activeUntil` must be after `activeFrom` (after now when `activeFrom` is not given); `condition`
    and `amount` must compile as CEL (422 `fee_rule_invalid`).
    """

    rule_id: RuleId
    operation_type: IntentType
    condition: Expression = "true"
    amount: Expression
    timing: Literal["PRE", "POST"]
    payer: Literal["source", "target"] = "source"
    fee_account_code: Annotated[int, msgspec.Meta(ge=1, le=65535)] = 10
    priority: Annotated[int, msgspec.Meta(ge=-1_000_000, le=1_000_000)] = 100
    max_fee: Amount
    active_from: AwareDatetime | None = None
    active_until: AwareDatetime | None = None
    description: Description = ""

    def __post_init__(self) -> None:
        _in_range("activeFrom", self.active_from)
        _in_range("activeUntil", self.active_until)
        if self.active_from and self.active_until and self.active_until <= self.active_from:
            raise ValueError("activeUntil must be after activeFrom")


class FeeRuleOut(Out, kw_only=True):
    rule_id: str
    version: int
    operation_type: str
    condition: str
    amount: str
    timing: str
    payer: str
    fee_account_code: int
    priority: int
    max_fee: int
    active_from: datetime
    active_until: datetime | None = None
    status: str
    description: str = ""


class LimitRuleIn(Struct, kw_only=True):
    """`POST /v1/admin/limit-rules`: a cap per user or tier, operation and Bangkok day or month;
    `maxAmount`, `maxCount` or both."""

    rule_id: RuleId
    subject_kind: Literal["user", "tier"]
    subject: OwnerId
    operation_type: IntentType
    currency: Currency
    period: Literal["day", "month"]
    max_amount: Amount | None = None
    max_count: Annotated[int, msgspec.Meta(gt=0, le=1_000_000)] | None = None

    def __post_init__(self) -> None:
        if self.max_amount is None and self.max_count is None:
            raise ValueError("a limit needs maxAmount, maxCount or both")


class LimitRuleOut(Out, kw_only=True):
    rule_id: str
    version: int
    subject_kind: str
    subject: str
    operation_type: str
    currency: str
    period: str
    max_amount: int | None = None
    max_count: int | None = None
    status: str


StepName = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,40}(?!\n)$")]


class RouteIn(Struct, kw_only=True):
    """`PUT /v1/admin/routes/{operationType}/{channel}`."""

    steps: Annotated[list[StepName], msgspec.Meta(min_length=1, max_length=20)]
    enabled: bool = True


class RouteOut(Out, kw_only=True):
    operation_type: str
    channel: str
    steps: list[str]
    enabled: bool
    updated_at: datetime


class FeeQuote(Struct, kw_only=True):
    """`POST /v1/fees/dry-run`: what an intent would be charged, without creating it."""

    type: IntentType
    amount: Amount
    currency: Currency
    from_: Party = msgspec.field(name="from")
    to: Party
    requires_monitoring: bool = False
    metadata: Metadata = {}
    miniapp_id: Id | None = None

    def __post_init__(self) -> None:
        if (self.type in MINIAPP_TYPES) != (self.miniapp_id is not None):
            raise ValueError("miniappId is required for MINIAPP_* intents and only for them")


class FeeBreakdown(Out, kw_only=True):
    fees: list[Fee]
    total: int
    currency: str
