-- When the inquiry a payout would be confirmed against expires (IPPS refuses a confirm of an expired
-- inquiry, psp-protocols §2.5). A confirm that got no answer and left no transfer under our key can
-- then never take: once the last inquiry has expired and IPPS still has no transfer, the adapter
-- concludes the payout was not executed (a new confirm needs a new inquiry, which a final row forbids).
ALTER TABLE pm.psp_tx_map ADD COLUMN inquiry_expires_at timestamptz;
