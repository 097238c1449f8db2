"""PM's Python SDK: `PMClient` (async) and `SyncPMClient` sign every request with a service key.

    from pm_client import CreateIntent, SyncPMClient, UserParty

    with SyncPMClient("http://127.0.0.1:8080", key_id, secret) as pm:
        intent = pm.create_intent(
            CreateIntent(type="P2P", amount=10_000, currency="THB",
                         from_=UserParty(id="u-1001"), to=UserParty(id="u-1002")),
            idempotency_key="order-42",
        )

Every request and response type is in `pm_client.api` (merchants, mini-apps and payment requests in
`pm_client.merchant_api`, exchange in `pm_client.fx_api`, reconciliation in `pm_client.recon_api`,
merchants' webhooks in `pm_client.webhook_api`); the most used are re-exported here.
"""

from __future__ import annotations

from pm_client.api import (
    TERMINAL_STATES,
    CreateIntent,
    Intent,
    MerchantParty,
    OperatorParty,
    Problem,
    PromptPayParty,
    SbpParty,
    ThaiQrParty,
    UserParty,
    Wallet,
)
from pm_client.client import PMAuth, PMClient, PMError, SyncPMClient

__all__ = [
    "TERMINAL_STATES",
    "CreateIntent",
    "Intent",
    "MerchantParty",
    "OperatorParty",
    "PMAuth",
    "PMClient",
    "PMError",
    "Problem",
    "PromptPayParty",
    "SbpParty",
    "SyncPMClient",
    "ThaiQrParty",
    "UserParty",
    "Wallet",
]
