"""Which URLs a webhook endpoint may have (`pm_shared.webhooks.urls`): each refusal's code, the
spellings of a non-public address that would slip past a naive check, and what the settings allow."""

from __future__ import annotations

import pytest

from pm_shared.webhooks.urls import UrlPolicy, UrlRefusedError, check, networks

STRICT = UrlPolicy()
LOCAL = UrlPolicy(networks("127.0.0.0/8, ::1/128"), allow_http=True)


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/pm?shop=1",
        "HTTPS://HOOKS.EXAMPLE.COM",
        "https://hooks.example.com.:8443/",
        "https://8.8.8.8/",
        "https://[2606:4700::1111]/",
        "https://[64:ff9b::808:808]/",  # NAT64 of a public address
    ],
)
def test_public_https_urls_are_taken(url: str) -> None:
    assert check(url, STRICT) == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://hooks.example.com/", "webhook_url_https_required"),
        ("ftp://hooks.example.com/", "webhook_url_invalid"),
        ("https:hooks.example.com", "webhook_url_invalid"),
        ("https://user:pw@hooks.example.com/", "webhook_url_invalid"),
        ("https://hooks.example.com@evil.example/", "webhook_url_invalid"),
        ("https://hooks.example.com/#part", "webhook_url_invalid"),
        ("https://hooks.example.com:0/", "webhook_url_invalid"),
        ("https://hooks.example.com:65536/", "webhook_url_invalid"),
        ("https://exa_mple.com/", "webhook_url_invalid"),
        ("https://évil.example/", "webhook_url_invalid"),
        ("https://[v1.x]/", "webhook_url_invalid"),
        ("https://" + "a" * 2048, "webhook_url_invalid"),
        ("https://127.0.0.1/", "webhook_url_not_allowed"),
        ("https://127.0.0.1./", "webhook_url_not_allowed"),
        ("https://127.1/", "webhook_url_not_allowed"),
        ("https://2130706433/", "webhook_url_not_allowed"),
        ("https://0x7f.0.0.1/", "webhook_url_not_allowed"),
        ("https://0177.0.0.1/", "webhook_url_not_allowed"),
        ("https://0/", "webhook_url_not_allowed"),
        ("https://localhost/", "webhook_url_not_allowed"),
        ("https://api.LOCALHOST./", "webhook_url_not_allowed"),
        ("https://[::1]/", "webhook_url_not_allowed"),
        ("https://[::ffff:127.0.0.1]/", "webhook_url_not_allowed"),
        ("https://[64:ff9b::7f00:1]/", "webhook_url_not_allowed"),
        ("https://[2002:7f00:1::]/", "webhook_url_not_allowed"),
        ("https://10.0.0.1/", "webhook_url_not_allowed"),
        ("https://192.168.1.1/", "webhook_url_not_allowed"),
        ("https://100.64.0.1/", "webhook_url_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "webhook_url_not_allowed"),
        ("https://[fe80::1]/", "webhook_url_not_allowed"),
        ("https://224.0.0.1/", "webhook_url_not_allowed"),
    ],
)
def test_refusals_have_their_codes(url: str, code: str) -> None:
    with pytest.raises(UrlRefusedError) as refused:
        check(url, STRICT)
    assert refused.value.code == code


def test_the_settings_allow_http_and_networks_but_no_more() -> None:
    for url in (
        "http://127.0.0.1:9999/",
        "http://[::1]:9999/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",
    ):
        assert check(url, LOCAL) == url
    for url in ("https://10.0.0.1/", "https://[fe80::1]/"):
        with pytest.raises(UrlRefusedError):
            check(url, LOCAL)
    with pytest.raises(ValueError):
        networks("127.0.0.0/8, not-a-network")
