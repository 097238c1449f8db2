"""Thai QR (EMVCo merchant-presented QR as PromptPay uses it): TLV, CRC, Tag 29/30 parse and generate.

Source of truth: ../shared/reference/psp-protocols.md §1. `parse` refuses a bad payload with
`ThaiQrError(code, message)`; `generate_credit_transfer` / `generate_bill_payment` build exact payloads.
"""

from pm_shared.thaiqr.amount import MAX_SATANG, format_amount, parse_amount
from pm_shared.thaiqr.crc import crc16
from pm_shared.thaiqr.errors import (
    AMBIGUOUS,
    BAD_AMOUNT,
    BAD_CRC,
    BAD_FORMAT,
    BAD_LENGTH,
    BAD_TAG,
    BAD_VALUE,
    MISSING_TAG,
    NOT_THAI,
    TRUNCATED,
    UNKNOWN_AID,
    ThaiQrError,
)
from pm_shared.thaiqr.promptpay import (
    AID_BILL_PAYMENT,
    AID_BILL_PAYMENT_CROSS_BORDER,
    AID_CREDIT_TRANSFER,
    AID_CREDIT_TRANSFER_OTA,
    ORDER_ASCENDING,
    ORDER_COUNTRY_FIRST,
    ORDER_CURRENCY_FIRST,
    THB,
    Kind,
    ProxyType,
    ThaiQr,
    format_mobile,
    generate_bill_payment,
    generate_credit_transfer,
    infer_proxy_type,
    local_mobile,
    parse,
    truemoney_wallet,
)
from pm_shared.thaiqr.slip import SlipVerify, generate_slip_verify, parse_slip_verify
from pm_shared.thaiqr.tlv import Tlv, decode, decode_payload, encode, with_crc

__all__ = [
    "AID_BILL_PAYMENT",
    "AID_BILL_PAYMENT_CROSS_BORDER",
    "AID_CREDIT_TRANSFER",
    "AID_CREDIT_TRANSFER_OTA",
    "AMBIGUOUS",
    "BAD_AMOUNT",
    "BAD_CRC",
    "BAD_FORMAT",
    "BAD_LENGTH",
    "BAD_TAG",
    "BAD_VALUE",
    "MAX_SATANG",
    "MISSING_TAG",
    "NOT_THAI",
    "ORDER_ASCENDING",
    "ORDER_COUNTRY_FIRST",
    "ORDER_CURRENCY_FIRST",
    "THB",
    "TRUNCATED",
    "UNKNOWN_AID",
    "Kind",
    "ProxyType",
    "SlipVerify",
    "ThaiQr",
    "ThaiQrError",
    "Tlv",
    "crc16",
    "decode",
    "decode_payload",
    "encode",
    "format_amount",
    "format_mobile",
    "generate_bill_payment",
    "generate_credit_transfer",
    "generate_slip_verify",
    "infer_proxy_type",
    "local_mobile",
    "parse",
    "parse_amount",
    "parse_slip_verify",
    "truemoney_wallet",
    "with_crc",
]
