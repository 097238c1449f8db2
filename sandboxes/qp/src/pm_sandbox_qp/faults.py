"""Faults chosen per request: an `X-Sandbox-Fault` header, or `sandbox-fault=<spec>` inside `purpose`.

A spec is a comma-separated list of:

| fault | where | what happens |
|---|---|---|
| `reject-registration` | POST /v1/qrs | 422 `REGISTRATION_REJECTED`, nothing stored |
| `5xx` or `5xx=<status>` | any /v1 request | that status (503 by default) before anything is done |
| `5xx-after-commit` | any /v1 request | the request takes effect, then a 500 answers it |
| `slow` or `slow=<ms>` | any /v1 request | the answer comes `slow_ms` later (or `<ms>`) |
| `timeout` or `timeout=<ms>` | any /v1 request | takes effect, then the answer waits `hang_ms` (or `<ms>`) |
| `duplicate-callbacks` | register or pay | every callback of the QR is delivered twice (same `event_id`) |
| `out-of-order-callbacks` | register or pay | a QR's IN_PROGRESS callback is delivered after its final one |
| `stuck=<n>` | register or pay | after the payer pays, n polls answer IN_PROGRESS, the next ACCEPTED |
| `expire` | register | the QR is born expired: EXPIRED at once (with its callback) |

Request faults act on the request carrying them; QR faults stay with the QR.
"""

from __future__ import annotations

import re

import msgspec

HEADER = "X-Sandbox-Fault"
_IN_PURPOSE = re.compile(r"sandbox-fault=([a-z0-9=,\-]+)")


class UnknownFault(ValueError):
    """A fault spec the sandbox does not know."""


class Faults(msgspec.Struct, kw_only=True):
    reject_registration: bool = False
    status_5xx: int | None = None
    after_commit_5xx: bool = False
    slow_ms: int | None = None
    hang_ms: int | None = None
    duplicate_callbacks: bool = False
    out_of_order_callbacks: bool = False
    stuck_polls: int | None = None
    expire: bool = False

    def qr_faults(self) -> QrFaults:
        return QrFaults(
            duplicate_callbacks=self.duplicate_callbacks,
            out_of_order_callbacks=self.out_of_order_callbacks,
            stuck_polls=self.stuck_polls,
            expire=self.expire,
        )


class QrFaults(msgspec.Struct, kw_only=True):
    """The faults a QR keeps for its life."""

    duplicate_callbacks: bool = False
    out_of_order_callbacks: bool = False
    stuck_polls: int | None = None
    expire: bool = False

    def merge(self, other: QrFaults) -> None:
        self.duplicate_callbacks |= other.duplicate_callbacks
        self.out_of_order_callbacks |= other.out_of_order_callbacks
        if other.stuck_polls is not None:
            self.stuck_polls = other.stuck_polls


def _int(name: str, value: str | None, default: int | None, low: int, high: int) -> int | None:
    if value is None:
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise UnknownFault(f"{name} takes an integer in [{low}, {high}], got {value!r}")
    return int(value)


def parse(spec: str, faults: Faults | None = None, *, slow_ms: int, hang_ms: int) -> Faults:
    """Add the faults in `spec` to `faults` (a new set when None); `slow_ms`/`hang_ms` are the defaults."""
    faults = faults or Faults()
    for token in filter(None, (t.strip() for t in spec.lower().split(","))):
        name, _, value = token.partition("=")
        arg = value or None
        if name == "reject-registration" and arg is None:
            faults.reject_registration = True
        elif name == "5xx":
            faults.status_5xx = _int(name, arg, 503, 500, 599)
        elif name == "5xx-after-commit" and arg is None:
            faults.after_commit_5xx = True
        elif name == "slow":
            faults.slow_ms = _int(name, arg, slow_ms, 0, 600_000)
        elif name == "timeout":
            faults.hang_ms = _int(name, arg, hang_ms, 0, 3_600_000)
        elif name == "duplicate-callbacks" and arg is None:
            faults.duplicate_callbacks = True
        elif name == "out-of-order-callbacks" and arg is None:
            faults.out_of_order_callbacks = True
        elif name == "stuck" and arg is not None:
            faults.stuck_polls = _int(name, arg, None, 0, 10_000)
        elif name == "expire" and arg is None:
            faults.expire = True
        else:
            raise UnknownFault(f"unknown fault {token!r}")
    return faults


def from_request(header: str | None, purpose: str, *, slow_ms: int, hang_ms: int) -> Faults:
    """The faults of one request: its header's, plus any `sandbox-fault=` in the purpose."""
    faults = parse(header or "", slow_ms=slow_ms, hang_ms=hang_ms)
    for spec in _IN_PURPOSE.findall(purpose):
        parse(spec, faults, slow_ms=slow_ms, hang_ms=hang_ms)
    return faults
