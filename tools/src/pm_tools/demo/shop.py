"""The demo merchant's setup over the API (admin key): onboarding, its key, its mini-app.

Idempotent across runs on one database. The onboarding is the same body under the same
Idempotency-Key every time, so with the same admin key (`.pm/demo-key.json` stays the same across
`make up` runs) a second run gets the same merchant and its current secret back. A merchant the
gateway says was onboarded under another admin key (409 `merchant_exists`: another key file, or
`--key-id`) is taken over by rotating its secret, the previous one valid for an hour more, so a run
still using it finishes. A deactivated demo merchant is reactivated; a demo mini-app that cannot be
used (deactivated, or defined otherwise) is replaced by one of this run's own. Each of these is said
in the summary's notes.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx
import msgspec

from pm_client import api, merchant_api
from pm_client.client import PMClient, PMError
from pm_tools.demo.errors import DemoError, GatewayUnavailableError
from pm_tools.demo.merchant import DEMO_MERCHANT, DEMO_MINIAPP, miniapp, onboarding
from pm_tools.demo.summary import ShopSummary

ONBOARDING_KEY = f"pm-demo:onboard:{DEMO_MERCHANT}"
ROTATION_GRACE_S = 3_600
_TAKE_OVER = frozenset({"merchant_exists", "idempotency_key_reused"})
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class ShopKeys:
    """The demo merchant as this run uses it: what the summary says of it, and its key."""

    summary: ShopSummary
    key_id: str
    secret: str


def _code(exc: PMError) -> str | None:
    return exc.problem.code if exc.problem is not None else None


def _refused(what: str, exc: PMError) -> DemoError:
    if exc.status in (401, 403):
        return DemoError(f"the gateway refused the key to {what} ({exc}); use an admin key", 2)
    return DemoError(f"the gateway answered {exc} to {what}")


class ShopSetup:
    """The calls that set the demo merchant up, with the run's admin key."""

    def __init__(self, client: PMClient, admin: httpx.AsyncClient, wait_s: float) -> None:
        self.client = client
        self.admin = admin
        self.wait_s = wait_s
        self.notes: list[str] = []

    async def _admin(self, method: str, path: str, body: msgspec.Struct | None = None) -> httpx.Response:
        try:
            return await self.admin.request(
                method,
                path,
                content=b"" if body is None else _ENCODER.encode(body),
                headers={} if body is None else {"Content-Type": "application/json"},
            )
        except httpx.TransportError as exc:
            raise GatewayUnavailableError(f"lost the gateway at {self.admin.base_url}: {exc}") from exc

    async def onboard(self) -> tuple[str, str, str]:
        """(key id, secret, how the run came by them), once every account of the merchant is open."""
        path = f"/v1/admin/merchants/{DEMO_MERCHANT}"
        known = (await self._admin("GET", path)).status_code == 200
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                made = await self.client.onboard_merchant(onboarding(), idempotency_key=ONBOARDING_KEY)
            except PMError as exc:
                if exc.status == 409 and _code(exc) in _TAKE_OVER:
                    return await self._take_over()
                raise _refused(f"onboard {DEMO_MERCHANT}", exc) from exc
            # Not every account open yet (the ledger-writer opens them): asking again finishes it.
            if all(a.opened for a in made.accounts):
                how = "found again (its onboarding answered again)" if known else "onboarded"
                return made.key_id, made.secret, how
            if time.monotonic() > deadline:
                raise DemoError(f"the accounts of {DEMO_MERCHANT} still not open after {self.wait_s:.0f}s")
            await asyncio.sleep(0.2)

    async def _take_over(self) -> tuple[str, str, str]:
        """Onboarded under another admin key: a new secret for this run (the old one works a while)."""
        path = f"/v1/admin/merchants/{DEMO_MERCHANT}/rotate-secret"
        rotated = await self._admin("POST", path, api.RotateKey(grace_seconds=ROTATION_GRACE_S))
        if rotated.status_code != 200:
            raise DemoError(
                f"cannot rotate the secret of {DEMO_MERCHANT}: {rotated.status_code} {rotated.text}"
            )
        key = msgspec.json.decode(rotated.content, type=api.ServiceKeySecret)
        how = (
            "found, onboarded under another admin key: its secret rotated "
            f"(the previous one valid {ROTATION_GRACE_S} s more)"
        )
        return key.key_id, key.secret, how

    async def reactivate(self) -> None:
        """Reactivate the demo merchant if someone deactivated it (its key is refused otherwise)."""
        shown = await self._admin("GET", f"/v1/admin/merchants/{DEMO_MERCHANT}")
        if shown.status_code != 200:
            raise DemoError(f"cannot read the merchant {DEMO_MERCHANT}: {shown.status_code} {shown.text}")
        if msgspec.json.decode(shown.content, type=merchant_api.Merchant).status == "ACTIVE":
            return
        again = await self._admin("POST", f"/v1/admin/merchants/{DEMO_MERCHANT}/reactivate")
        if again.status_code != 200:
            raise DemoError(f"cannot reactivate {DEMO_MERCHANT}: {again.status_code} {again.text}")
        self.notes.append(f"merchant {DEMO_MERCHANT} was deactivated: reactivated for the demo")

    async def add_miniapp(self, run_id: str) -> str:
        """The mini-app's id: the demo's, or this run's own when the demo's cannot be used."""
        for miniapp_id in (DEMO_MINIAPP, f"{DEMO_MINIAPP}-{run_id}"):
            try:
                app = await self.client.create_miniapp(miniapp(miniapp_id))
            except PMError as exc:
                if exc.status == 409 and _code(exc) == "miniapp_exists":
                    self.notes.append(f"mini-app {miniapp_id} exists with another definition: not used")
                    continue
                raise _refused(f"add the mini-app {miniapp_id}", exc) from exc
            if app.status == "ACTIVE":
                return miniapp_id
            self.notes.append(f"mini-app {miniapp_id} is deactivated: not used")
        raise DemoError(f"no usable mini-app for {DEMO_MERCHANT} (see the notes)")


async def open_shop(
    client: PMClient, admin: httpx.AsyncClient, run_id: str, wait_s: float
) -> tuple[ShopKeys, list[str]]:
    """The demo merchant, onboarded (or found), active, with a usable mini-app; and the notes on how."""
    setup = ShopSetup(client, admin, wait_s)
    key_id, secret, how = await setup.onboard()
    await setup.reactivate()
    miniapp_id = await setup.add_miniapp(run_id)
    return ShopKeys(ShopSummary(DEMO_MERCHANT, miniapp_id, how), key_id, secret), setup.notes
