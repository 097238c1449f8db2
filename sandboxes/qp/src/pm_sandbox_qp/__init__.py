"""The QP sandbox: an SBP C2B dynamic-QR acquirer for tests and `make up` (see `app` for its routes)."""
