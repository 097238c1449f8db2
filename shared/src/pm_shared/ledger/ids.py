"""Deterministic ledger ids (docs/ledger.md): every retry of the same step produces the same id.

A transfer id is a 128-bit hash of (intent id, leg name); an account id of (owner kind, owner id,
ledger, code). TigerBeetle burns a transfer id after a transient failure (`id_already_failed`), so
a step that is retried *as a new attempt* must put the attempt into the leg name ("authorize#2").
"""

from __future__ import annotations

import hashlib

U128_MAX = 2**128 - 1
# Field separator in the hashed text: cannot appear in an owner id or leg name that passes validation.
_SEP = "\x1f"


def _u128(*parts: str) -> int:
    text = _SEP.join(parts)
    for salt in range(1_000):
        digest = hashlib.blake2b((text if salt == 0 else f"{text}{_SEP}{salt}").encode(), digest_size=16)
        value = int.from_bytes(digest.digest(), "big")
        # 0 and 2^128-1 are reserved by TigerBeetle (id_must_not_be_zero / id_must_not_be_int_max).
        if 0 < value < U128_MAX:
            return value
    raise AssertionError("unreachable: a thousand hashes cannot all be 0 or 2^128-1")


def _check(name: str, value: str) -> None:
    if not value or _SEP in value:
        raise ValueError(f"{name} must be non-empty and printable: {value!r}")


def transfer_id(intent_id: str, leg: str) -> int:
    """The id of one leg of an intent, e.g. ("0192…", "principal")."""
    _check("intent id", intent_id)
    _check("leg", leg)
    return _u128("transfer", intent_id, leg)


def account_id(owner_kind: str, owner_id: str, ledger: int, code: int) -> int:
    """The id of the account of (owner kind, owner id) with `code` on `ledger`."""
    _check("owner kind", owner_kind)
    _check("owner id", owner_id)
    return _u128("account", owner_kind, owner_id, str(ledger), str(code))
