"""The sender's rules on their own: which addresses may be called, the retry schedule with its jitter,
`Retry-After`, the circuit breaker, the event types a state change makes, and the settings."""

from __future__ import annotations

import ipaddress
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from pm_shared.messages import IntentStateChanged, now
from pm_shared.settings import SettingsError
from pm_webhooks import addresses, payloads, retries, settings
from pm_webhooks.breakers import Breakers

LOOPBACK = settings.parse_networks("127.0.0.0/8,::1/128")


@pytest.mark.parametrize(
    "address",
    [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "169.254.169.254",
        "224.0.0.1",
        "0.0.0.0",
        "100.64.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "2002:c0a8:101::1",
        "ff02::1",
    ],
)
def test_addresses_off_the_public_internet_are_forbidden(address: str) -> None:
    assert addresses.forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_public_addresses_are_allowed(address: str) -> None:
    assert addresses.allowed(ipaddress.ip_address(address), ())


def test_the_allow_list_lets_its_networks_through() -> None:
    assert addresses.allowed(ipaddress.ip_address("127.0.0.1"), LOOPBACK)
    assert not addresses.allowed(ipaddress.ip_address("10.0.0.1"), LOOPBACK)


async def test_a_url_is_sent_to_the_checked_address_under_its_own_host() -> None:
    target = await addresses.check("http://localhost:8123/hook?x=1", LOOPBACK)
    assert target.url.host in ("127.0.0.1", "::1") and target.url.port == 8123
    assert target.url.path == "/hook" and target.host_header == "localhost:8123"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://example.com/x", "invalid_url"),
        ("http://127.0.0.1:9/x", "address_not_allowed"),
        ("https://[::1]/x", "address_not_allowed"),
        ("http://localhost/x", "address_not_allowed"),
        ("http://name.invalid/x", "dns_error"),
    ],
)
async def test_urls_that_may_not_be_called(url: str, error: str) -> None:
    with pytest.raises(addresses.AddressNotAllowedError) as refused:
        await addresses.check(url, ())
    assert refused.value.error == error


def test_the_schedule_is_jittered_within_a_fifth_and_ends() -> None:
    schedule = settings.parse_schedule(settings.SVIX_SCHEDULE)
    assert sum(schedule) == 5 + 300 + 1800 + 7200 + 18000 + 36000 + 36000  # ~27.5 h
    rng = random.Random(7)
    for attempts, base in enumerate(schedule, 1):
        for _ in range(50):
            wait = retries.delay(schedule, attempts, 0.2, rng)
            assert wait is not None and base * 0.8 <= wait <= base * 1.2
    assert retries.delay(schedule, len(schedule) + 1, 0.2) is None


def test_retry_after_in_seconds_or_as_a_date_capped() -> None:
    assert retries.retry_after("120", 86_400) == 120
    assert retries.retry_after("999999", 3_600) == 3_600
    assert retries.retry_after(None, 10) is None
    assert retries.retry_after("soon", 10) is None
    at = 1_800_000_000.0
    date = format_datetime(datetime.fromtimestamp(at, UTC) + timedelta(seconds=90), usegmt=True)
    assert retries.retry_after(date, 86_400, now=at) == 90


def test_the_breaker_opens_after_failures_in_a_row_and_a_success_closes_it() -> None:
    breakers = Breakers(failures=3, cooldown_s=60)
    assert breakers.failed("ep", now=0) is None
    breakers.succeeded("ep")
    assert breakers.failed("ep", now=0) is None and breakers.failed("ep", now=0) is None
    assert breakers.failed("ep", now=1) == 61
    assert breakers.open_until("ep", now=30) == 61
    assert breakers.open_until("ep", now=61) is None  # its trial attempt may go
    assert breakers.failed("ep", now=62) == 122  # which failed: open again at once
    breakers.succeeded("ep")
    assert breakers.open_until("ep", now=62) is None


def change(state: str, previous: str) -> IntentStateChanged:
    return IntentStateChanged(
        intent_id="i", message_id="m", produced_at=now(), state=state, previous=previous
    )


@pytest.mark.parametrize(
    ("state", "previous", "intent_type", "by_request", "expected"),
    [
        ("SETTLED", "AUTHORIZED", "MINIAPP_CHARGE", False, ["intent.settled"]),
        ("SETTLED", "AUTHORIZED", "REFUND", False, ["refund.settled"]),
        ("FAILED", "AUTHORIZED", "REFUND", False, ["intent.failed"]),
        ("VALIDATED", "CREATED", "MINIAPP_CHARGE", True, ["payment_request.confirmed"]),
        ("VALIDATED", "CREATED", "MINIAPP_CHARGE", False, []),
        ("FAILED", "CREATED", "MINIAPP_CHARGE", True, ["intent.failed", "payment_request.confirmed"]),
        ("AUTHORIZED", "VALIDATED", "MINIAPP_CHARGE", True, []),
    ],
)
def test_event_types_of_a_state_change(
    state: str, previous: str, intent_type: str, by_request: bool, expected: list[str]
) -> None:
    assert payloads.event_types(change(state, previous), intent_type, by_request) == expected


def test_settings_refuse_a_bad_schedule_or_network_or_no_key() -> None:
    base = {"PM_KEY_ENCRYPTION_KEY": "A" * 43 + "="}
    assert settings.load(base).retry_delays() == settings.parse_schedule(settings.SVIX_SCHEDULE)
    with pytest.raises(SettingsError, match="RETRY_SCHEDULE_S"):
        settings.load({**base, "PM_WEBHOOKS_RETRY_SCHEDULE_S": "5,soon"})
    with pytest.raises(SettingsError, match="ALLOWED_NETWORKS"):
        settings.load({**base, "PM_WEBHOOKS_ALLOWED_NETWORKS": "10.0.0.0/33"})
    with pytest.raises(SettingsError, match="PM_KEY_ENCRYPTION_KEY"):
        settings.load({})
