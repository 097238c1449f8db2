"""What a merchant's key may do (docs/api.md, "Mini-apps"): MINIAPP_* intents only with a merchant's
key, only on its own account, only through its own active mini-apps that allow the operation, and a
charge only within the mini-app's cap. Each refusal is a 403 problem with its own code.

A MINIAPP_CHARGE moves a user's money, so it needs the user's consent: it is never accepted on
`POST /v1/intents` (403 `charge_needs_consent`); a payment request the user confirms makes it.
"""

from __future__ import annotations

from pm_client.api import MINIAPP_TYPES, CreateIntent, MerchantParty
from pm_gateway.auth import Caller, refuse
from pm_shared.db import Conn
from pm_shared.merchants import miniapps

CODES = (
    "merchant_key_required",
    "forbidden_merchant",
    "forbidden_miniapp",
    "miniapp_inactive",
    "miniapp_operation_not_allowed",
    "over_miniapp_cap",
)
"""The 403 codes `check` answers with."""


def _merchant_side(request: CreateIntent) -> MerchantParty:
    side = request.to if request.type == "MINIAPP_CHARGE" else request.from_
    assert isinstance(side, MerchantParty)  # shapes.check ruled out anything else
    return side


async def check(conn: Conn, caller: Caller, request: CreateIntent) -> None:
    """Raise the 403 a MINIAPP_* intent by `caller` deserves; other types pass untouched."""
    if request.type not in MINIAPP_TYPES:
        return
    merchant = caller.permissions.merchant
    if merchant is None:
        raise refuse(403, "merchant_key_required", f"{request.type} is made with a merchant's key")
    if _merchant_side(request).id != merchant:
        raise refuse(403, "forbidden_merchant", "a merchant's key touches only its own account")
    assert request.miniapp_id is not None  # CreateIntent requires it for MINIAPP_*
    try:
        app = await miniapps.lookup(conn, request.miniapp_id)
    except miniapps.MiniappNotFoundError:
        app = None
    allowed(caller, request, app)


def allowed(caller: Caller, request: CreateIntent, app: miniapps.Miniapp | None) -> None:
    """`check` with the request's mini-app (None: there is none) read already."""
    merchant = caller.permissions.merchant
    if merchant is None:
        raise refuse(403, "merchant_key_required", f"{request.type} is made with a merchant's key")
    if _merchant_side(request).id != merchant:
        raise refuse(403, "forbidden_merchant", "a merchant's key touches only its own account")
    # Another merchant's mini-app is refused as if it did not exist: ids do not leak across merchants.
    if app is None or app.merchant_id != merchant:
        raise refuse(
            403, "forbidden_miniapp", f"{request.miniapp_id} is not one of this merchant's mini-apps"
        )
    if not app.active:
        raise refuse(403, "miniapp_inactive", f"mini-app {app.miniapp_id} is deactivated")
    if request.type not in app.operations:
        raise refuse(
            403, "miniapp_operation_not_allowed", f"mini-app {app.miniapp_id} does not do {request.type}"
        )
    cap = app.max_charge.get(request.currency)
    if request.type == "MINIAPP_CHARGE" and cap is not None and request.amount > cap:
        raise refuse(403, "over_miniapp_cap", f"one charge through {app.miniapp_id} is at most {cap}")
