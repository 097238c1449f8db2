"""The Auth Center sandbox: a token it issued verifies to its user until it expires; anything else,
forged, malformed, expired or absent, is 401 (never another status: nginx would make it a 500)."""

from __future__ import annotations

import time

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from pm_sandbox_auth import tokens
from pm_sandbox_auth.app import create_app
from pm_sandbox_auth.settings import Settings

SECRET = "auth-test-secret"


def client() -> httpx.AsyncClient:
    app = create_app(Settings(secret=SECRET))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://auth")


async def test_an_issued_token_verifies_to_its_user() -> None:
    async with client() as http:
        made = await http.post("/tokens", json={"userId": "u-1001", "ttlS": 60})
        assert made.status_code == 201, made.text
        token = made.json()["token"]
        answer = await http.get("/verify", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 204 and answer.headers["x-user-id"] == "u-1001"
        for header in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {token}"}):
            refused = await http.get("/verify", headers=header)
            assert refused.status_code == 401 and "x-user-id" not in refused.headers
        bad = await http.post("/tokens", json={"userId": ".."})
        assert bad.status_code == 422


def test_forged_and_expired_tokens_name_nobody() -> None:
    now = time.time()
    good = tokens.issue(SECRET, "u.with.dots", int(now) + 60)
    assert tokens.verify(SECRET, good, now) == "u.with.dots"
    assert tokens.verify("another-secret", good, now) is None
    assert tokens.verify(SECRET, good, now + 61) is None
    user, expires, mac = good.rsplit(".", 2)
    assert tokens.verify(SECRET, f"admin.{expires}.{mac}", now) is None


@settings(max_examples=300, database=None)
@given(st.text(max_size=120))
def test_any_text_is_a_valid_token_or_nobody(text: str) -> None:
    assert tokens.verify(SECRET, text, time.time()) is None
