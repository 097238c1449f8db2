"""A payout job's target, as the public API shapes it, turned into the IPPS inquiry's target fields.

The orchestrator passes the intent's payee through unchanged (see docs/api.md): either
`kind="promptpay"` with `proxy_type` `MSISDN | NATID | EWALLET | BILLER` (a biller carries `ref1`,
maybe `ref2`), or `kind="thaiqr"` with a scanned EMVCo `payload`. IPPS wants `proxy_type`
`MSISDN | NATID | TAXID | EWALLETID | BANKAC` + `proxy_value`, or `biller_id` + `ref1` (+ `ref2`).

The gateway refuses most bad targets at intake; what still gets here is refused with `InvalidTarget`
before IPPS is called (the job then ends FAILED, `INVALID_TARGET`).
"""

from __future__ import annotations

from typing import Final

from pm_shared import thaiqr
from pm_shared.messages import Party

# API proxy type → IPPS proxy type. A 13-digit tax id has the shape of a National ID, and the API
# cannot tell them apart, so both go as NATID (IPPS resolves either through the same registry).
_API_PROXY_TYPES: Final[dict[str, str]] = {"MSISDN": "MSISDN", "NATID": "NATID", "EWALLET": "EWALLETID"}

# Thai QR Tag 29 proxy → IPPS proxy type; `ota` (a one-time authorisation code) is not a payee IPPS
# can pay, so it has no entry.
_QR_PROXY_TYPES: Final[dict[str, str]] = {
    "mobile": "MSISDN",
    "national_id": "NATID",
    "ewallet": "EWALLETID",
    "bank_account": "BANKAC",
}


class InvalidTarget(Exception):
    """The job's target cannot be paid through IPPS: nothing is sent."""


def inquiry_body(amount: int, target: Party) -> dict[str, object]:
    """The IPPS inquiry paying `amount` satang to `target`; raises `InvalidTarget`."""
    if target.kind == "promptpay":
        fields = _promptpay(target)
    elif target.kind == "thaiqr":
        fields = _thai_qr(amount, target.payload)
    else:
        raise InvalidTarget(f"a payout cannot go to a party of kind {target.kind!r}")
    return {"amount": amount, **fields}


def _promptpay(target: Party) -> dict[str, object]:
    if not target.proxy_value:
        raise InvalidTarget("a PromptPay target needs a proxy value")
    if target.proxy_type == "BILLER":
        if not target.ref1:
            raise InvalidTarget("a biller payment needs ref1")
        return _biller(target.proxy_value, target.ref1, target.ref2)
    wire = _API_PROXY_TYPES.get(target.proxy_type or "")
    if wire is None:
        raise InvalidTarget(f"unknown PromptPay proxy type {target.proxy_type!r}")
    if target.ref1 or target.ref2:
        # IPPS takes a proxy or a biller, never both; dropping the references would pay someone
        # the payer did not describe.
        raise InvalidTarget("references are for BILLER targets only")
    value = _local_mobile(target.proxy_value) if wire == "MSISDN" else target.proxy_value
    return {"proxy_type": wire, "proxy_value": value}


def _local_mobile(value: str) -> str:
    """`66812345678` and `0066812345678` → `0812345678`, the form IPPS validates (10 digits, 0…)."""
    if len(value) == 11 and value.startswith("66"):
        return "0" + value[2:]
    if len(value) == 13 and value.startswith("0066"):
        return "0" + value[4:]
    return value


def _biller(biller_id: str, ref1: str, ref2: str | None) -> dict[str, object]:
    fields: dict[str, object] = {"biller_id": biller_id, "ref1": ref1}
    if ref2:
        fields["ref2"] = ref2
    return fields


def _thai_qr(amount: int, payload: str | None) -> dict[str, object]:
    if not payload:
        raise InvalidTarget("a Thai QR target needs its payload")
    try:
        qr = thaiqr.parse(payload)
    except thaiqr.ThaiQrError as exc:
        raise InvalidTarget(f"the Thai QR does not parse: {exc}") from None
    if qr.amount is not None and qr.amount != amount:
        raise InvalidTarget(f"the QR asks for {qr.amount} satang, the job pays {amount}")
    if qr.kind == "bill_payment":
        if qr.aid != thaiqr.AID_BILL_PAYMENT or qr.biller_id is None or qr.ref1 is None:
            # A cross-border biller is not reachable through a domestic PromptPay payout.
            raise InvalidTarget(f"the QR's bill payment (AID {qr.aid}) is not a domestic PromptPay biller")
        return _biller(qr.biller_id, qr.ref1, qr.ref2)
    wire = _QR_PROXY_TYPES.get(qr.proxy_type or "")
    if wire is None or not qr.proxy_value:
        raise InvalidTarget(f"the QR's proxy type {qr.proxy_type!r} cannot be paid through IPPS")
    # A bank account goes as the QR carries it: the 3-digit bank code, then the account number.
    return {"proxy_type": wire, "proxy_value": qr.proxy_value}
