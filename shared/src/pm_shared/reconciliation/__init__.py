"""Reconciliation (docs/reconciliation.md): the reconciler's alerts, checks, repairs and reports, shared
by the reconciler, the gateway's admin API and `pm recon`."""
