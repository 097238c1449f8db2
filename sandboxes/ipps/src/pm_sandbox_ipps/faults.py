"""Faults a request can ask for: the `X-Sandbox-Fault` header, or a magic amount or proxy value.

The header is a comma-separated list of `name` or `name=value`:

- `reject` / `reject=CODE` (inquiry): 422 with code `ACCOUNT_CLOSED` (the default), `PROXY_NOT_FOUND`
  or `BANK_UNSUPPORTED`.
- `insufficient-liquidity` (confirm): the transfer is committed FAILED, `INSUFFICIENT_LIQUIDITY`.
- `receiver-rejected` (confirm): the transfer is committed FAILED, `RECEIVER_REJECTED`.
- `pending` (confirm): answers PENDING; SUCCESS after `pending_ms`, then the callback.
- `unknown=N` (confirm): answers PENDING; the first N status reads answer UNKNOWN, read N+1 SUCCESS.
- `timeout` (confirm): commits SUCCESS (callback sent), then holds the answer `hang_s`, past the
  client's timeout.
- `slow=MS` (any /v1): answers MS milliseconds late, on top of `latency_ms`; `slow` alone is 2000.
- `server-error` (any /v1): 503 `SERVER_ERROR` before anything is committed.
- `server-error-after-commit` (confirm): commits the transfer, then answers 500 `SERVER_ERROR`.
- `duplicate-callbacks=N` (confirm): every callback is delivered N times (`duplicate-callbacks`: 2).
- `out-of-order-callbacks` (confirm): the final callback (sequence 2) is followed by a stale
  `transfer.pending` (sequence 1).

The confirm faults act when the transfer is created; a repeat with the same key just replays it.

Magic values, for clients that cannot set headers: the amounts in `MAGIC_AMOUNTS` at confirm, and at
inquiry a proxy value (or biller ref1) ending in `404` (PROXY_NOT_FOUND), `410` (ACCOUNT_CLOSED) or
`501` (BANK_UNSUPPORTED); not for a National ID or tax ID (real ones end in anything): use the
header there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from pm_sandbox_ipps.models import SandboxError
from pm_sandbox_ipps.values import MAGIC_AMOUNTS, MAGIC_SUFFIXES

HEADER = "X-Sandbox-Fault"

REJECT_CODES = frozenset(MAGIC_SUFFIXES.values())
SLOW_DEFAULT_MS = 2_000


@dataclass(frozen=True)
class Faults:
    reject: str | None = None
    insufficient_liquidity: bool = False
    receiver_rejected: bool = False
    pending: bool = False
    unknown_polls: int = 0
    timeout: bool = False
    slow_ms: int = 0
    server_error: bool = False
    server_error_after_commit: bool = False
    callback_copies: int = 1
    out_of_order_callbacks: bool = False

    @property
    def failure_code(self) -> str | None:
        if self.insufficient_liquidity:
            return "INSUFFICIENT_LIQUIDITY"
        if self.receiver_rejected:
            return "RECEIVER_REJECTED"
        return None


def _count(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    if not value.isdigit() or int(value) > 100_000:
        raise SandboxError(400, "INVALID_FAULT", f"fault {name!r} takes a whole number, not {value!r}")
    return int(value)


# Faults that take no value, and what each sets.
_FLAGS: dict[str, Callable[[Faults], Faults]] = {
    "insufficient-liquidity": lambda f: replace(f, insufficient_liquidity=True),
    "receiver-rejected": lambda f: replace(f, receiver_rejected=True),
    "pending": lambda f: replace(f, pending=True),
    "timeout": lambda f: replace(f, timeout=True),
    "server-error": lambda f: replace(f, server_error=True),
    "server-error-after-commit": lambda f: replace(f, server_error_after_commit=True),
    "out-of-order-callbacks": lambda f: replace(f, out_of_order_callbacks=True),
}


def parse(header: str, base: Faults | None = None) -> Faults:
    """The faults `header` asks for, on top of `base`; an unknown fault is a 400 `INVALID_FAULT`."""
    faults = base or Faults()
    for item in filter(None, (part.strip() for part in header.split(","))):
        name, _, raw = item.partition("=")
        faults = _add(faults, name.strip().lower(), raw.strip() if raw else None)
    return faults


def _add(faults: Faults, name: str, value: str | None) -> Faults:
    if name in _FLAGS:
        return _FLAGS[name](faults)
    match name:
        case "reject":
            code = (value or "ACCOUNT_CLOSED").upper()
            if code not in REJECT_CODES:
                raise SandboxError(400, "INVALID_FAULT", f"reject takes one of {sorted(REJECT_CODES)}")
            return replace(faults, reject=code)
        case "unknown":
            return replace(faults, unknown_polls=_count("unknown", value, 1))
        case "slow":
            return replace(faults, slow_ms=_count("slow", value, SLOW_DEFAULT_MS))
        case "duplicate-callbacks":
            return replace(faults, callback_copies=max(1, _count("duplicate-callbacks", value, 2)))
        case other:
            raise SandboxError(400, "INVALID_FAULT", f"unknown fault {other!r}")


def for_amount(faults: Faults, amount: int) -> Faults:
    """`faults` plus whatever a magic confirm amount asks for."""
    magic = MAGIC_AMOUNTS.get(amount)
    return parse(magic, faults) if magic else faults


def for_target(faults: Faults, value: str) -> Faults:
    """`faults` plus the rejection a magic proxy value or ref1 asks for."""
    for suffix, code in MAGIC_SUFFIXES.items():
        if value.endswith(suffix) and faults.reject is None:
            return replace(faults, reject=code)
    return faults
