"""The SDK's merchant calls against the real gateway, as the README shows them: onboard a merchant (no
ledger-writer here, so its account is reported not opened yet), add its mini-app, ask a user to pay;
and an admin's other calls: merchants' status, secrets and accounts, the catalog, FX rates."""

from __future__ import annotations

import uuid

import pytest

from pm_client import PMClient, PMError
from pm_client.fx_api import SetRate
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


async def test_an_admin_manages_merchants_miniapps_and_rates_with_the_sdk(gateway: Gateway) -> None:
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with PMClient(gateway.url, gateway.admin.key_id, gateway.admin.secret) as admin:
        shop = await admin.onboard_merchant(
            CreateMerchant(merchant_id=merchant_id, name="Tea", currencies=["THB"]),
            idempotency_key=merchant_id,
        )
        await admin.create_miniapp(
            CreateMiniapp(
                miniapp_id=f"{merchant_id}-app",
                merchant_id=merchant_id,
                name="Tea",
                operations=["MINIAPP_CREDIT"],
            )
        )
        assert merchant_id in [m.merchant_id for m in await admin.list_merchants()]
        assert (await admin.deactivate_merchant(merchant_id)).status == "INACTIVE"
        assert (await admin.get_merchant(merchant_id)).status == "INACTIVE"
        back = await admin.reactivate_merchant(merchant_id)
        assert (back.status, back.accounts_state) == ("ACTIVE", "OPEN")
        rotated = await admin.rotate_merchant_secret(merchant_id, grace_seconds=0)
        assert rotated.key_id == shop.key_id and rotated.secret != shop.secret
        with pytest.raises(PMError) as active:
            await admin.close_merchant_accounts(merchant_id)
        assert active.value.problem is not None and active.value.problem.code == "merchant_active"
        apps = await admin.list_miniapps(merchant_id)
        assert [a.miniapp_id for a in apps] == [f"{merchant_id}-app"]
        assert (await admin.deactivate_miniapp(f"{merchant_id}-app")).status == "INACTIVE"
        await admin.set_fx_rate(SetRate(pair="USD/RUB", rate="91.25", spread_bps=40))
        rates = await admin.list_fx_rates("USD/RUB")
        assert (rates[0].rate, rates[0].spread_bps) == ("91.25", 40)
