"""The IPPS sandbox: an HTTP server speaking the PromptPay payout API the adapter calls (`app`)."""
