"""How `pm demo` answers payment requests for its users: `/v1/me`, as an end user's app reaches it.

End users hold no service key; the gateway believes `X-PM-User` only beside the front door's proxy
secret (docs/api.md, "End users"). So the demo speaks for a user in one of two ways:

- through the front door, as a real app does: a token from the Auth Center (`POST /tokens`; the
  sandbox's, which `make up` runs) sent as `Authorization: Bearer` to nginx, which adds the user and
  the secret. `make up` starts the front door when nginx is installed, with a proxy secret of that run
  that nothing else knows;
- straight to the gateway with the proxy secret itself (`PM_GATEWAY_PROXY_SECRET`, as the fleet was
  started with it), sending `X-PM-User` and `X-PM-Proxy-Secret` as nginx would.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from pm_tools.demo.errors import DemoError

PROXY_SECRET_HEADER = "X-PM-Proxy-Secret"
USER_HEADER = "X-PM-User"


@dataclass(frozen=True)
class Door:
    """Where the demo reaches `/v1/me`: the gateway with `proxy_secret`, or the front door at `url`
    with tokens from the Auth Center at `auth_url`."""

    url: str
    proxy_secret: str | None = None
    auth_url: str | None = None

    def __post_init__(self) -> None:
        if (self.proxy_secret is None) == (self.auth_url is None):
            raise ValueError("a door has either a proxy secret or an Auth Center")

    def describe(self) -> str:
        if self.proxy_secret is not None:
            return f"the gateway's /v1/me at {self.url} with the proxy secret"
        return f"the front door at {self.url}, with tokens from the Auth Center at {self.auth_url}"


@dataclass
class DoorClient:
    """Answers for users at the door (close it with `aclose`)."""

    door: Door
    http: httpx.AsyncClient = field(init=False)
    _tokens: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        headers = {"Accept": "application/json"}
        if self.door.proxy_secret is not None:
            headers[PROXY_SECRET_HEADER] = self.door.proxy_secret
        self.http = httpx.AsyncClient(base_url=self.door.url, timeout=35.0, headers=headers)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _as(self, user: str) -> dict[str, str]:
        """The headers that make a request the user's."""
        if self.door.auth_url is None:
            return {USER_HEADER: user}
        if user not in self._tokens:
            async with httpx.AsyncClient(base_url=self.door.auth_url, timeout=10.0) as auth:
                made = await auth.post("/tokens", json={"userId": user})
            if made.status_code != 201:
                raise DemoError(
                    f"the Auth Center at {self.door.auth_url} gave no token for {user}: {made.text}"
                )
            self._tokens[user] = str(made.json()["token"])
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    async def confirm(self, user: str, request_id: str) -> httpx.Response:
        path = f"/v1/me/payment-requests/{request_id}/confirm"
        return await self.http.post(path, headers=await self._as(user))

    async def decline(self, user: str, request_id: str) -> httpx.Response:
        path = f"/v1/me/payment-requests/{request_id}/decline"
        return await self.http.post(path, headers=await self._as(user))

    async def preflight(self, user: str) -> None:
        """The door lets `user` read their payment requests, else DemoError (exit 2) saying why."""
        try:
            answer = await self.http.get("/v1/me/payment-requests", headers=await self._as(user))
        except httpx.TransportError as exc:
            raise DemoError(
                f"nothing answers at {self.door.describe()}: {type(exc).__name__}: {exc}", 2
            ) from exc
        if answer.status_code != 200:
            raise DemoError(
                f"{self.door.describe()} refused to answer for {user} "
                f"({answer.status_code} {answer.text[:200]}); check the proxy secret",
                2,
            )
