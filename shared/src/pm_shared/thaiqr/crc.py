"""CRC-16/CCITT-FALSE, the EMVCo QR checksum.

Polynomial 0x1021, initial value 0xFFFF, no reflection, no final xor; the check value of
"123456789" is 0x29B1. The stdlib `binascii.crc_hqx` computes exactly this when seeded with 0xFFFF.
"""

from __future__ import annotations

import binascii


def crc16(data: str) -> str:
    """The CRC of `data` (ASCII) as 4 upper-case hex digits, zero-padded.

    For a QR payload `data` is everything before the CRC value, including the "6304" header.
    """
    return f"{binascii.crc_hqx(data.encode('ascii'), 0xFFFF):04X}"
