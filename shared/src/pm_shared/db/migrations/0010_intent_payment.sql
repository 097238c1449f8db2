-- What a payer must do for an intent to go on, as the PSP said (DESIGN §7, SBP_TOPUP): for a top-up
-- the SBP QR link (`qr.nspk.ru`) to show the payer, its expiry and the PSP's reference. NULL while
-- there is nothing to show. Written by the orchestrator with the move that records it.
ALTER TABLE pm.intent ADD COLUMN payment jsonb;
