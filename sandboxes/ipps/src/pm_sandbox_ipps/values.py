"""The IPPS sandbox's magic values, for clients that cannot set its fault header (see docs/psp.md):
amounts that select a fault at confirm, and proxy suffixes it refuses at inquiry. One table for the
sandbox itself, `pm chaos` and `pm demo`."""

from __future__ import annotations

# Amount in minor units → the fault the confirm acts out (see pm_sandbox_ipps.faults).
MAGIC_AMOUNTS: dict[int, str] = {
    40_001: "insufficient-liquidity",
    40_002: "receiver-rejected",
    50_003: "server-error",
    50_000: "server-error-after-commit",
    50_004: "timeout",
    20_002: "pending",
    20_003: "unknown=3",
    20_004: "duplicate-callbacks",
    20_005: "out-of-order-callbacks",
}
# A proxy value (or biller ref1) ending so is refused at inquiry with this code.
MAGIC_SUFFIXES: dict[str, str] = {
    "404": "PROXY_NOT_FOUND",
    "410": "ACCOUNT_CLOSED",
    "501": "BANK_UNSUPPORTED",
}
