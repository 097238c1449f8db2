"""pm-adapter-ipps: PromptPay payouts through the IPPS PSP."""
