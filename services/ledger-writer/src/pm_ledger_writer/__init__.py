"""pm-ledger-writer: the single writer of the ledger."""
