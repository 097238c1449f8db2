"""End users through the front door, on the wire: a real nginx (Debian's package, with auth_request)
in front of the gateway, asking the Auth Center sandbox about each token (pm_tools.frontdoor). A valid
token reaches `/v1/me` as its user; a missing or invalid one is 401 at nginx; a client's own
`X-PM-User` never reaches PM; PM itself refuses `/v1/me` without the proxy secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from pm_client.client import PMAuth
from pm_shared.streams.connection import connect
from pm_shared.streams.names import INTENTS, LEDGER_COMMANDS
from pm_shared.streams.provision import provision
from pm_tools import frontdoor
from pm_tools.processes import free_port
from pm_tools.testing import fixtures
from pm_tools.testing.db import run
from pm_tools.testing.fixtures import eventually
from pm_tools.testing.fleet import Proc, admin_key, module_fleet, wait_ready

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(frontdoor.installed() is None, reason=f"no nginx: {frontdoor.INSTALL_HINT}"),
]
PROXY_SECRET = "front-door-test-secret-of-32-characters"
AUTH_SECRET = "auth-test-secret"
STREAMS = ("pm:intents", "pm:events", "pm:ledger:commands")


@dataclass
class Door:
    url: str
    """nginx."""
    gateway: Proc
    auth: Proc
    admin: PMAuth


@pytest.fixture(scope="module")
def door(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Door]:
    """nginx in front of the gateway and the Auth Center sandbox, started once for the module (each
    test makes users and merchants of its own)."""
    workdir = tmp_path_factory.mktemp("front-door")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with module_fleet(database_url, workdir, streams=STREAMS) as fleet:
        # No ledger-writer or orchestrator runs here: the streams they would provision are made ready,
        # and a merchant's accounts are never opened (its onboarding answers 202 after the gateway's
        # wait for them, shortened here).
        run(provisioned())
        gateway = fleet.start(
            "gateway", env={"PM_GATEWAY_PROXY_SECRET": PROXY_SECRET, "PM_GATEWAY_WALLET_OPEN_WAIT_S": "0.5"}
        )
        auth = fleet.start("auth-sandbox", env={"PM_AUTH_SANDBOX_SECRET": AUTH_SECRET})
        run(wait_ready(gateway, auth))
        spec = frontdoor.FrontDoor(f"127.0.0.1:{port}", gateway.url(""), auth.url(""), PROXY_SECRET)
        with (workdir / "nginx.stderr").open("wb") as err:
            nginx = frontdoor.start(spec, workdir / "nginx", stderr=err.fileno())

        async def up() -> bool:
            assert nginx.poll() is None, (workdir / "nginx.stderr").read_text()
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(url + "/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            key_id, secret = run(admin_key(fleet.database_url))
            run(eventually(up, timeout=20, what="nginx answers /healthz from the gateway"))
            yield Door(url, gateway, auth, PMAuth(key_id, secret))
        finally:
            nginx.terminate()
            nginx.wait(10)


async def provisioned() -> None:
    redis = connect(fixtures.test_redis_url())
    try:
        await provision(redis, 1, [LEDGER_COMMANDS, INTENTS])
    finally:
        await redis.aclose()


async def token(door: Door, user: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        made = await http.post(door.auth.url("/tokens"), json={"userId": user})
    assert made.status_code == 201, made.text
    value: str = made.json()["token"]
    return value


async def ask_user_to_pay(door: Door, user: str) -> str:
    """A merchant (onboarded through the front door, signed) asks `user` to pay; the request's id."""
    merchant_id = f"m-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=door.url, auth=door.admin, timeout=30) as admin:
        made = await admin.post(
            "/v1/admin/merchants",
            json={"merchantId": merchant_id, "name": "Kiosk", "currencies": ["THB"]},
            headers={"Idempotency-Key": merchant_id},
        )
        assert made.status_code in (201, 202), made.text
        app = {"miniappId": f"{merchant_id}-app", "merchantId": merchant_id, "name": "Kiosk"}
        created = await admin.post("/v1/admin/miniapps", json={**app, "operations": ["MINIAPP_CHARGE"]})
        assert created.status_code == 201, created.text
    merchant = PMAuth(made.json()["keyId"], made.json()["secret"])
    async with httpx.AsyncClient(base_url=door.url, auth=merchant, timeout=30) as shop:
        body = {"miniappId": f"{merchant_id}-app", "userId": user, "amount": 500, "currency": "THB"}
        asked = await shop.post("/v1/payment-requests", json=body, headers={"Idempotency-Key": "a"})
    assert asked.status_code == 201, asked.text
    request_id: str = asked.json()["id"]
    return request_id


async def test_a_token_reaches_v1_me_as_its_user_and_nothing_else_does(door: Door) -> None:
    alice, mallory = f"u-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    wanted = await ask_user_to_pay(door, alice)
    path = "/v1/me/payment-requests"
    async with httpx.AsyncClient(base_url=door.url, timeout=30) as http:
        mine = await http.get(path, headers={"Authorization": f"Bearer {await token(door, alice)}"})
        assert mine.status_code == 200, mine.text
        assert [r["id"] for r in mine.json()] == [wanted]

        # Mallory's own token, with Alice's id in the headers PM trusts: PM still sees Mallory.
        forged = {
            "Authorization": f"Bearer {await token(door, mallory)}",
            "X-PM-User": alice,
            "X-PM-Proxy-Secret": PROXY_SECRET,
        }
        theirs = await http.get(path, headers=forged)
        assert theirs.status_code == 200 and theirs.json() == []
        stolen = await http.post(f"{path}/{wanted}/confirm", headers=forged)
        assert stolen.status_code == 404, stolen.text

        for headers in ({}, {"Authorization": "Bearer forged"}, {"X-PM-User": alice}):
            refused = await http.get(path, headers=headers)
            assert refused.status_code == 401, (headers, refused.text)
        assert (await http.get("/_pm_auth")).status_code == 404  # the subrequest is internal
        assert (await http.post("/v1/webhooks/ipps", content=b"{}")).status_code == 404

    # Straight to the gateway, without the front door's secret, a user id is worth nothing.
    async with httpx.AsyncClient(base_url=door.gateway.url(""), timeout=30) as direct:
        bypass = await direct.get(path, headers={"X-PM-User": alice})
        assert (bypass.status_code, bypass.json()["code"]) == (401, "proxy_secret_invalid")

    # Alice confirms through the front door: the charge is made.
    async with httpx.AsyncClient(base_url=door.url, timeout=30) as http:
        yes = await http.post(
            f"{path}/{wanted}/confirm", headers={"Authorization": f"Bearer {await token(door, alice)}"}
        )
    assert yes.status_code == 202 and yes.json()["type"] == "MINIAPP_CHARGE", yes.text
    # The charge is Alice's to read, through the front door, where its link points.
    async with httpx.AsyncClient(base_url=door.url, timeout=30) as http:
        seen = await http.get(
            yes.headers["Location"], headers={"Authorization": f"Bearer {await token(door, alice)}"}
        )
    assert (seen.status_code, seen.json()["id"]) == (200, yes.json()["id"]), seen.text


async def test_a_user_pays_from_their_own_wallet_through_the_front_door(door: Door) -> None:
    alice, bob = f"u-{uuid.uuid4().hex[:6]}", f"u-{uuid.uuid4().hex[:6]}"
    body = {"type": "P2P", "amount": 700, "currency": "THB", "to": {"kind": "user", "id": bob}}
    async with httpx.AsyncClient(base_url=door.url, timeout=30) as http:
        alices = {"Authorization": f"Bearer {await token(door, alice)}", "Idempotency-Key": "lunch"}
        made = await http.post("/v1/me/intents", json=body, headers=alices)
        assert made.status_code == 202, made.text
        # The payer is whoever the token is: a forged X-PM-User changes nothing.
        assert made.json()["from"] == {"kind": "user", "id": alice}
        again = await http.post("/v1/me/intents", json=body, headers={**alices, "X-PM-User": bob})
        assert (again.status_code, again.json()["id"]) == (202, made.json()["id"]), again.text
        assert again.headers["Idempotent-Replayed"] == "true"
        no_token = await http.post("/v1/me/intents", json=body, headers={"Idempotency-Key": "x"})
        assert no_token.status_code == 401


def test_the_compose_config_is_the_rendered_server_block() -> None:
    committed = Path(__file__).parents[1] / "compose" / "nginx" / "pm.conf.template"
    assert committed.read_text() == frontdoor.server_block(frontdoor.COMPOSE)
