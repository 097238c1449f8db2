"""Deterministic ids, the chart of accounts, and ledger URLs."""

from __future__ import annotations

import subprocess
import sys

import pytest
import tigerbeetle as tb

from pm_shared.ledger import chart, ids, urls


def test_the_same_inputs_give_the_same_id_in_another_process() -> None:
    code = "from pm_shared.ledger.ids import transfer_id; print(transfer_id('0192-intent', 'principal'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(other.stdout) == ids.transfer_id("0192-intent", "principal")


def test_every_input_changes_the_id() -> None:
    base = ids.account_id("user", "u-1001", 764, 1)
    assert (
        len(
            {
                base,
                ids.account_id("user", "u-1002", 764, 1),
                ids.account_id("merchant", "u-1001", 764, 1),
                ids.account_id("user", "u-1001", 840, 1),
                ids.account_id("user", "u-1001", 764, 2),
            }
        )
        == 5
    )
    assert ids.transfer_id("i", "principal") != ids.transfer_id("i", "fee")
    # Account and transfer ids come from separate namespaces even for look-alike inputs.
    assert ids.transfer_id("user", "u") != ids.account_id("user", "u", 0, 0)


def test_ids_are_valid_tigerbeetle_ids() -> None:
    for n in range(2_000):
        value = ids.transfer_id(f"intent-{n}", "principal")
        assert 0 < value < tb.AMOUNT_MAX


def test_separator_and_empty_parts_are_refused() -> None:
    with pytest.raises(ValueError):
        ids.transfer_id("a\x1fb", "leg")
    with pytest.raises(ValueError):
        ids.account_id("user", "", 764, 1)


def test_chart_matches_the_design() -> None:
    assert chart.ledger_of("THB") == 764 and chart.currency_of(840) == "USD"
    assert chart.FLAGS[chart.Code.USER_WALLET] & tb.AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS
    assert {s.code for s in chart.operator_accounts("RUB")} == set(chart.OPERATOR_CODES)
    with pytest.raises(chart.UnknownCurrencyError, match="THB"):
        chart.ledger_of("EUR")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("tigerbeetle://0@127.0.0.1:3000", urls.TigerBeetleUrl(0, "127.0.0.1:3000")),
        ("tigerbeetle://7@3001,3002,3003", urls.TigerBeetleUrl(7, "3001,3002,3003")),
        (
            "embedded+postgresql://postgres@127.0.0.1:5432/pm",
            urls.EmbeddedUrl("postgresql://postgres@127.0.0.1:5432/pm"),
        ),
    ],
)
def test_ledger_urls(url: str, expected: object) -> None:
    assert urls.parse(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://x/db",
        "tigerbeetle://@3000",
        "tigerbeetle://x@3000",
        "tigerbeetle://0@",
        "tigerbeetle://0@a,,b",
        "embedded+postgresql://postgres@127.0.0.1:5432",
        "nonsense",
    ],
)
def test_bad_ledger_urls_are_refused_clearly(url: str) -> None:
    with pytest.raises(urls.LedgerUrlError):
        urls.parse(url)
