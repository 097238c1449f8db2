"""Which parties each intent type takes (docs/saga.md), and whose money a request moves."""

from __future__ import annotations

from pm_client.api import (
    CreateIntent,
    FieldError,
    LiquidityParty,
    MerchantParty,
    OperatorParty,
    Party,
    PromptPayParty,
    SbpParty,
    ThaiQrParty,
    UserParty,
)
from pm_gateway.problems import ProblemError
from pm_shared import thaiqr

_ALLOWED: dict[str, tuple[tuple[type[Party], ...], tuple[type[Party], ...]]] = {
    "P2P": ((UserParty,), (UserParty,)),
    "PROMPTPAY_WITHDRAWAL": ((UserParty,), (PromptPayParty, ThaiQrParty)),
    "SBP_TOPUP": ((SbpParty,), (UserParty,)),
    "ADJUSTMENT": (
        (OperatorParty, UserParty, MerchantParty, LiquidityParty),
        (UserParty, MerchantParty, LiquidityParty, OperatorParty),
    ),
    "MINIAPP_CHARGE": ((UserParty,), (MerchantParty,)),
    "MINIAPP_CREDIT": ((MerchantParty,), (UserParty,)),
    "FX_EXCHANGE": ((UserParty,), (UserParty,)),
    # A merchant gives a charge back to its payer. (A payout the bank sends back is refunded from the
    # PSP's clearing account by the IPPS adapter, never through this API.)
    "REFUND": ((MerchantParty,), (UserParty,)),
}


def allowed_pairs(intent_type: str) -> list[tuple[type[Party], type[Party]]]:
    """The (from, to) party kinds `intent_type` takes: what `check` enforces, as the schema states it."""
    sources, targets = _ALLOWED[intent_type]
    return [
        (source, target)
        for source in sources
        for target in targets
        # An ADJUSTMENT moves money between the operator and one user or merchant, either way.
        if intent_type != "ADJUSTMENT" or (source is OperatorParty) != (target is OperatorParty)
    ]


def _kinds(types: tuple[type[Party], ...]) -> str:
    return " or ".join(repr(t.__struct_config__.tag) for t in types)


# The currencies a PSP route moves as they are: PromptPay pays baht only; SBP collects roubles, and a
# top-up into another currency is exchanged from roubles (`pm_gateway.fx.topup`).
NATIVE_CURRENCY: dict[str, str] = {"PROMPTPAY_WITHDRAWAL": "THB", "SBP_TOPUP": "RUB"}


def check(request: CreateIntent) -> None:
    """Raise a 422 problem when the parties do not fit the intent type, or no route can move its
    currency (a PromptPay withdrawal of anything but baht)."""
    sources, targets = _ALLOWED[request.type]
    errors: list[FieldError] = []
    if not isinstance(request.from_, sources):
        errors.append(FieldError(path="$.from.kind", message=f"{request.type} takes {_kinds(sources)}"))
    if not isinstance(request.to, targets):
        errors.append(FieldError(path="$.to.kind", message=f"{request.type} takes {_kinds(targets)}"))
    if not errors:
        errors += _pair_errors(request)
    if errors:
        raise ProblemError(422, "invalid_parties", "the parties do not fit the intent type", errors=errors)
    if request.type == "PROMPTPAY_WITHDRAWAL" and request.currency != NATIVE_CURRENCY[request.type]:
        raise ProblemError(
            422,
            "currency_unsupported",
            f"PromptPay pays THB only, not {request.currency}",
            errors=[FieldError(path="$.currency", message="PROMPTPAY_WITHDRAWAL takes THB")],
        )
    if isinstance(request.to, ThaiQrParty):
        _check_thai_qr(request, request.to)


def _check_thai_qr(request: CreateIntent, target: ThaiQrParty) -> None:
    """A scanned Thai QR must parse (CRC, TLV, a PromptPay AID) and agree with the request."""
    try:
        qr = thaiqr.parse(target.payload)
    except thaiqr.ThaiQrError as exc:
        raise ProblemError(
            422,
            "invalid_thai_qr",
            f"the Thai QR cannot be used: {exc}",
            errors=[FieldError(path="$.to.payload", message=f"{exc.code}: {exc}")],
        ) from None
    if request.currency != "THB":
        raise ProblemError(
            422,
            "invalid_thai_qr",
            "a Thai QR pays in THB",
            errors=[
                FieldError(path="$.currency", message=f"the QR is in THB, the intent in {request.currency}")
            ],
        )
    if qr.amount is not None and qr.amount != request.amount:
        raise ProblemError(
            422,
            "qr_amount_mismatch",
            f"the QR asks for {qr.amount} satang, the intent says {request.amount}",
            errors=[FieldError(path="$.amount", message=f"must equal the QR's amount, {qr.amount}")],
        )


def _pair_errors(request: CreateIntent) -> list[FieldError]:
    source, target = request.from_, request.to
    if request.type == "FX_EXCHANGE":
        if isinstance(source, UserParty) and isinstance(target, UserParty) and source.id != target.id:
            return [FieldError(path="$.to.id", message="an exchange is between one user's own wallets")]
        return []
    if isinstance(source, UserParty) and isinstance(target, UserParty) and source.id == target.id:
        return [FieldError(path="$.to.id", message="a user cannot pay themselves")]
    if request.type == "ADJUSTMENT" and isinstance(source, OperatorParty) == isinstance(
        target, OperatorParty
    ):
        return [
            FieldError(
                path="$",
                message="an ADJUSTMENT moves money between the operator and one user, merchant or "
                "liquidity account",
            )
        ]
    if isinstance(target, PromptPayParty):
        if target.proxy_type == "BILLER" and not target.ref1:
            return [FieldError(path="$.to.ref1", message="a biller payment needs ref1")]
        if target.proxy_type != "BILLER" and (target.ref1 or target.ref2):
            return [FieldError(path="$.to.ref1", message="references are for BILLER targets only")]
    return []


def acting_owner(request: CreateIntent) -> str | None:
    """The user the caller acts for: the payer, or for a top-up (and an operator credit) the payee;
    None when no user is a party (an ADJUSTMENT that funds a merchant, for admin keys only).

    A key with an owner scope may only act for the owners in it; whom they pay is not restricted.
    """
    for party in (request.from_, request.to):
        if isinstance(party, UserParty):
            return party.id
    return None
