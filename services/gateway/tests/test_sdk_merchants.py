"""The SDK's merchant calls against the real gateway, as the README shows them: onboard a merchant (no
ledger-writer here, so its account is reported not opened yet), add its mini-app, ask a user to pay."""

from __future__ import annotations

import uuid

import pytest

from pm_client import PMClient, PMError
from pm_client.merchant_api import CreateMerchant, CreateMiniapp, CreatePaymentRequest
from pm_tools.testing.gateway import Gateway


async def test_onboard_a_merchant_add_its_miniapp_and_ask_a_user_to_pay(gateway: Gateway) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with PMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as admin:
        shop = await admin.onboard_merchant(
            CreateMerchant(merchant_id=merchant_id, name="Coffee Corner", currencies=["THB"]),
            idempotency_key=f"onboard-{merchant_id}",
        )
        assert (shop.merchant_id, shop.status) == (merchant_id, "ACTIVE") and shop.secret
        assert [(a.currency, a.opened) for a in shop.accounts] == [("THB", False)]
        again = await admin.onboard_merchant(
            CreateMerchant(merchant_id=merchant_id, name="Coffee Corner", currencies=["THB"]),
            idempotency_key=f"onboard-{merchant_id}",
        )
        assert (again.key_id, again.secret) == (shop.key_id, shop.secret)
        app = await admin.create_miniapp(
            CreateMiniapp(
                miniapp_id=f"{merchant_id}-app",
                merchant_id=merchant_id,
                name="Coffee",
                operations=["MINIAPP_CHARGE"],
                max_charge={"THB": 50_000},
            )
        )
        assert app.status == "ACTIVE" and app.max_charge == {"THB": 50_000}
    async with PMClient(gateway.url, shop.key_id, shop.secret) as merchant:
        asked = await merchant.create_payment_request(
            CreatePaymentRequest(
                miniapp_id=f"{merchant_id}-app", user_id="u-1001", amount=6_500, currency="THB"
            ),
            idempotency_key="order-7",
        )
        assert (asked.status, asked.amount, asked.user_id) == ("OPEN", 6_500, "u-1001")
        assert (await merchant.get_payment_request(asked.id)).id == asked.id
        with pytest.raises(PMError) as refused:
            await merchant.create_payment_request(
                CreatePaymentRequest(
                    miniapp_id=f"{merchant_id}-app", user_id="u-1001", amount=50_001, currency="THB"
                ),
                idempotency_key="order-8",
            )
        assert refused.value.problem is not None and refused.value.problem.code == "over_miniapp_cap"
