"""What the reconciler can find: the `kind` of a `pm.reconciliation_alert` row, and its period.

An alert is keyed by (kind, subject, period). Per-intent checks use the intent id as subject and the
period `continuous`; a sweep uses what it found (a transfer id, an account id, a ledger, a PSP's
reference) and the UTC day it covered.
"""

from __future__ import annotations

CONTINUOUS = "continuous"
"""The period of a per-intent check: an intent is checked whenever it ends, and by the verify sweep."""

# Per intent (subject: the intent id), from its recomputed legs against `lookup_transfers`.
MISSING_TRANSFER = "missing_transfer"
"""A transfer the intent's state requires is not in the ledger."""
AMOUNT_MISMATCH = "amount_mismatch"
"""A transfer of the intent moved another amount than its leg says."""
ACCOUNT_MISMATCH = "account_mismatch"
"""A transfer of the intent debits or credits another account than its leg says."""
LEDGER_MISMATCH = "ledger_mismatch"
"""A transfer of the intent is on another ledger than its leg says."""
CODE_MISMATCH = "code_mismatch"
"""A transfer of the intent has another code, flags or user data than its leg says."""
POSTED_ZERO = "posted_zero"
"""A SETTLED intent's pending transfer was posted with amount 0: under TigerBeetle ≥ 0.16 that posts
nothing and releases the reservation (before 0.16 it meant "post the full amount")."""
PENDING_NOT_RESOLVED = "pending_not_resolved"
"""A terminal intent's pending transfer is neither posted nor voided nor expired: money stays held."""
POSTED_ON_FAILED = "posted_on_failed"
"""A FAILED intent has a posted leg: money moved for a payment PM reports as failed."""

INTENT_KINDS = frozenset(
    {
        MISSING_TRANSFER,
        AMOUNT_MISMATCH,
        ACCOUNT_MISMATCH,
        LEDGER_MISMATCH,
        CODE_MISMATCH,
        POSTED_ZERO,
        PENDING_NOT_RESOLVED,
        POSTED_ON_FAILED,
    }
)

# Sweeps (period: the UTC day covered).
ORPHAN_TRANSFER = "orphan_transfer"
"""A ledger transfer no intent and no PM operation accounts for (subject: the transfer id)."""
PROJECTION_DRIFT = "projection_drift"
"""`pm.account_balance` disagrees with the ledger's posted totals (subject: the account id)."""
LEDGER_UNBALANCED = "ledger_unbalanced"
"""A ledger's debits and credits do not sum to the same total (subject: the ledger number)."""
PSP_MISSING = "psp_missing"
"""A SETTLED withdrawal or top-up is not in its PSP's settlement report (subject: psp:reference)."""
PSP_AMOUNT_MISMATCH = "psp_amount_mismatch"
"""A PSP's settlement report has our payment with another amount or status (subject: psp:reference)."""
PSP_UNKNOWN = "psp_unknown"
"""A PSP's settlement report has a line PM knows nothing of (subject: psp:their reference)."""
PSP_REPORT_UNAVAILABLE = "psp_report_unavailable"
"""A PSP's settlement report could not be fetched or read (subject: the PSP)."""

ALERT_CAP = "alert_cap"
"""A run would have opened more alerts than the cap: none of them were opened, this one says so
(subject: the check run)."""

SWEEP_KINDS: dict[str, frozenset[str]] = {
    "verify": INTENT_KINDS,
    "orphans": frozenset({ORPHAN_TRANSFER}),
    "projection": frozenset({PROJECTION_DRIFT}),
    "totals": frozenset({LEDGER_UNBALANCED}),
    "settlement": frozenset({PSP_MISSING, PSP_AMOUNT_MISMATCH, PSP_UNKNOWN, PSP_REPORT_UNAVAILABLE}),
}
"""The kinds each sweep reports (and so auto-resolves when it no longer finds them)."""
