"""pm-reconciler: compares the ledger with PostgreSQL and raises alerts."""
