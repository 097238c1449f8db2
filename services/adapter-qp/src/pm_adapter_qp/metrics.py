"""The adapter's Prometheus metrics (its own process registry, served on `/metrics`)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

PSP_CALL_SECONDS = Histogram(
    "pm_psp_call_seconds",
    "Latency of calls to a PSP, by operation and how they ended "
    "(ok, not_found, refused, conflict, unavailable)",
    ["psp", "operation", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)

RESULTS = Counter(
    "pm_psp_results_total",
    "PspResults published, by status (PENDING, SUCCEEDED, FAILED) and failure code",
    ["psp", "status", "failure_code"],
)

HINTS = Counter(
    "pm_psp_hints_total",
    "Hints (verified callbacks) read, by what came of them "
    "(finished, pending, unchanged, already_final, unknown_key, unreadable_status)",
    ["psp", "outcome"],
)
