"""Reconciliation reports (pm_shared.reconciliation.reports) against real PostgreSQL: a period's figures
per currency from intents and their timelines inserted with SQL, the period's bounds, the CSV and HTML
renderings, the files, and strict period parsing.

The tests use a database of this module's own, not the session's: the alert section is not bounded by
a period, so alerts other modules commit would change its counts. Each test runs in a transaction that
is rolled back.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from pm_shared.db import Conn, connect, drop_database, ensure_database, migrate
from pm_shared.reconciliation.reports import (
    COLUMNS,
    OLDEST_ALERTS,
    AlertCount,
    Failure,
    FxBought,
    Period,
    PeriodError,
    PspTotals,
    Report,
    Revenue,
    Volume,
    build,
    to_csv,
    to_html,
    write,
)
from pm_tools.testing.db import new_database_url, run

DAY = date(2026, 12, 2)
"""A Wednesday of ISO week 2026-W49 (Monday 30 November to Sunday 6 December)."""
KEY_ID = "pk_" + "ab" * 12
PERMISSIONS = '{"operations": ["P2P"], "owners": null, "admin": false}'
HOSTILE_CODE = "<script>alert(1)</script>"
HOSTILE_SUBJECT = "<img src=x onerror=alert('x')>&"


async def _migrated(url: str) -> None:
    await ensure_database(url)
    await migrate(url)


@pytest.fixture(scope="module")
def reports_database_url() -> Iterator[str]:
    url = new_database_url()
    run(_migrated(url))
    try:
        yield url
    finally:
        run(drop_database(url, force=True))


@pytest_asyncio.fixture
async def conn(reports_database_url: str) -> AsyncIterator[Conn]:
    """A connection in a transaction rolled back after the test, with the service key intents need."""
    connection = await connect(reports_database_url)
    tx = connection.transaction()
    await tx.start()
    try:
        await connection.execute(
            "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, 'x', $2)",
            KEY_ID,
            PERMISSIONS,
        )
        yield connection
    finally:
        await tx.rollback()
        await connection.close()


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def fee(amount: int, currency: str = "THB", rule: str = "r-1") -> dict[str, Any]:
    """A fee as the orchestrator stores it in pm.intent.fees."""
    return {
        "ruleId": rule,
        "ruleVersion": 1,
        "amount": amount,
        "currency": currency,
        "timing": "PRE",
        "payer": "source",
        "feeAccountCode": 10,
    }


def exchange(*, spread: int, buy_currency: str, buy_amount: int, principal: int) -> dict[str, Any]:
    """An exchange's figures as intake copies them from the quote into pm.intent.exchange."""
    return {
        "quoteId": str(uuid.uuid4()),
        "buyCurrency": buy_currency,
        "buyAmount": buy_amount,
        "principal": principal,
        "spread": spread,
        "rate": "35.8125",
        "pair": "USD/THB",
        "spreadBps": 50,
    }


async def intent(
    conn: Conn,
    *,
    amount: int,
    reached: datetime | None,
    state: str = "SETTLED",
    currency: str = "THB",
    type_: str = "P2P",
    failure_code: str | None = None,
    fees: Sequence[dict[str, Any]] = (),
    fx: dict[str, Any] | None = None,
) -> uuid.UUID:
    """An intent whose timeline is CREATED and AUTHORIZED a minute before `reached`, then `state` at
    `reached` (None: it never left AUTHORIZED). Its row was updated later (now), as rows are."""
    intent_id = uuid.uuid4()
    base = reached or at(DAY)
    await conn.execute(
        """INSERT INTO pm.intent (id, key_id, idempotency_key, request_hash, type, state, failure_code,
                                  amount, currency, source, target, fees, exchange, created_at, updated_at)
           VALUES ($1, $2, $3, '\\x00', $4, $5, $6, $7, $8, '{"kind": "user", "id": "u-1"}',
                   '{"kind": "user", "id": "u-2"}', $9::jsonb, $10::jsonb, $11, now())""",
        intent_id,
        KEY_ID,
        str(intent_id),
        type_,
        state if reached else "AUTHORIZED",
        failure_code,
        amount,
        currency,
        json.dumps(list(fees)),
        None if fx is None else json.dumps(fx),
        base - timedelta(minutes=1),
    )
    timeline = [
        (None, "CREATED", base - timedelta(minutes=1)),
        ("CREATED", "AUTHORIZED", base - timedelta(seconds=30)),
    ]
    if reached:
        timeline.append(("AUTHORIZED", state, reached))
    for from_state, to_state, when in timeline:
        await event(conn, intent_id, from_state, to_state, when)
    return intent_id


async def event(
    conn: Conn, intent_id: uuid.UUID, from_state: str | None, to_state: str, when: datetime
) -> None:
    await conn.execute(
        "INSERT INTO pm.intent_event (intent_id, from_state, to_state, at) VALUES ($1, $2, $3, $4)",
        intent_id,
        from_state,
        to_state,
        when,
    )


async def the_day(conn: Conn) -> None:
    """The intents of DAY and around it; `test_a_day_has_exactly_its_figures` states what counts."""
    await intent(conn, amount=10_000, reached=at(DAY, 0), fees=[fee(500)])
    await intent(conn, amount=2_500, reached=at(DAY, 23, 59, 59, 999_999))
    await intent(
        conn,
        amount=30_000,
        reached=at(DAY, 12),
        type_="PROMPTPAY_WITHDRAWAL",
        fees=[fee(1_000), fee(250, rule="r-2")],
    )
    await intent(
        conn,
        amount=10_000,
        reached=at(DAY, 13),
        currency="USD",
        type_="FX_EXCHANGE",
        fx=exchange(spread=50, buy_currency="THB", buy_amount=356_334, principal=9_950),
    )
    await intent(
        conn,
        amount=100_000,
        reached=at(DAY, 14),
        currency="RUB",
        type_="SBP_TOPUP",
        fx=exchange(spread=500, buy_currency="THB", buy_amount=40_000, principal=99_500),
    )
    await intent(conn, amount=5_000, reached=at(DAY, 15), failure_code="INSUFFICIENT_FUNDS", state="FAILED")
    await intent(conn, amount=6_000, reached=at(DAY, 16), failure_code="INSUFFICIENT_FUNDS", state="FAILED")
    await intent(conn, amount=100, reached=at(DAY, 16, 30), failure_code=HOSTILE_CODE, state="FAILED")
    await intent(
        conn,
        amount=20_000,
        reached=at(DAY, 17),
        currency="USD",
        type_="FX_EXCHANGE",
        failure_code="LIQUIDITY_INSUFFICIENT",
        fx=exchange(spread=100, buy_currency="THB", buy_amount=700_000, principal=19_900),
        state="FAILED",
    )
    # Not in DAY: still AUTHORIZED; settled the next day at its first instant; settled the day before.
    await intent(conn, amount=4_000, reached=None)
    await intent(conn, amount=7_000, reached=at(DAY + timedelta(days=1), 0), fees=[fee(70)])
    early = await intent(conn, amount=9_000, reached=at(DAY - timedelta(days=1), 23, 59, 59, 999_999))
    # A SETTLED event replayed on DAY for an intent that settled the day before: it stays the day before.
    await event(conn, early, "AUTHORIZED", "SETTLED", at(DAY, 9))


async def test_a_day_has_exactly_its_figures(conn: Conn) -> None:
    await the_day(conn)
    report = await build(conn, Period.parse("2026-12-02"))

    assert (report.period, report.start, report.end) == (
        "2026-12-02",
        at(DAY, 0),
        at(DAY + timedelta(days=1), 0),
    )
    assert report.volumes == (
        Volume(currency="RUB", intent_type="SBP_TOPUP", count=1, amount=100_000),
        Volume(currency="THB", intent_type="P2P", count=2, amount=12_500),
        Volume(currency="THB", intent_type="PROMPTPAY_WITHDRAWAL", count=1, amount=30_000),
        Volume(currency="USD", intent_type="FX_EXCHANGE", count=1, amount=10_000),
    )
    assert report.revenue == (
        Revenue(currency="RUB", source="fx_spread", intent_type="SBP_TOPUP", count=1, amount=500),
        Revenue(currency="THB", source="fee", intent_type="P2P", count=1, amount=500),
        Revenue(currency="THB", source="fee", intent_type="PROMPTPAY_WITHDRAWAL", count=2, amount=1_250),
        Revenue(currency="USD", source="fx_spread", intent_type="FX_EXCHANGE", count=1, amount=50),
    )
    assert report.fx_bought == (
        FxBought(currency="THB", sold_currency="RUB", intent_type="SBP_TOPUP", count=1, amount=40_000),
        FxBought(currency="THB", sold_currency="USD", intent_type="FX_EXCHANGE", count=1, amount=356_334),
    )
    assert report.failures == (
        Failure(currency="THB", failure_code=HOSTILE_CODE, count=1, amount=100),
        Failure(currency="THB", failure_code="INSUFFICIENT_FUNDS", count=2, amount=11_000),
        Failure(currency="USD", failure_code="LIQUIDITY_INSUFFICIENT", count=1, amount=20_000),
    )
    assert report.currencies() == ["RUB", "THB", "USD"]
    assert report.psp == () and report.alert_counts == () and report.open_alerts == ()


async def test_the_day_before_and_after_have_only_their_own(conn: Conn) -> None:
    await the_day(conn)
    before = await build(conn, Period.day(DAY - timedelta(days=1)))
    after = await build(conn, Period.day(DAY + timedelta(days=1)))
    assert before.volumes == (Volume(currency="THB", intent_type="P2P", count=1, amount=9_000),)
    assert after.volumes == (Volume(currency="THB", intent_type="P2P", count=1, amount=7_000),)
    assert after.revenue == (Revenue(currency="THB", source="fee", intent_type="P2P", count=1, amount=70),)
    assert before.failures == after.failures == ()


async def test_a_week_is_monday_to_sunday(conn: Conn) -> None:
    monday, sunday = date(2026, 11, 30), date(2026, 12, 6)
    await intent(conn, amount=1, reached=at(monday - timedelta(days=1), 23, 59, 59, 999_999))
    await intent(conn, amount=20, reached=at(monday, 0))
    await intent(conn, amount=300, reached=at(DAY, 12))
    await intent(conn, amount=4_000, reached=at(sunday, 23, 59, 59, 999_999))
    await intent(conn, amount=50_000, reached=at(sunday + timedelta(days=1), 0))
    await intent(conn, amount=600_000, reached=at(sunday, 8), state="FAILED", failure_code="PSP_REJECTED")

    week = Period.parse("2026-W49")
    assert (week.start, week.end) == (at(monday, 0), at(sunday + timedelta(days=1), 0))
    assert week == Period.week_of(DAY) == Period.week_of(sunday) != Period.week_of(monday - timedelta(days=1))
    report = await build(conn, week)
    assert report.period == "2026-W49"
    assert report.volumes == (Volume(currency="THB", intent_type="P2P", count=3, amount=4_320),)
    assert report.failures == (Failure(currency="THB", failure_code="PSP_REJECTED", count=1, amount=600_000),)


async def test_sums_beyond_bigint_stay_exact_integers(conn: Conn) -> None:
    big = 9_000_000_000_000_000_001  # below 2^63: a bigint; two of them are not
    for hour in (10, 11):
        await intent(conn, amount=big, reached=at(DAY, hour), currency="USD", fees=[fee(big, "USD")])
    report = await build(conn, Period.day(DAY))
    (volume,) = report.volumes
    (revenue,) = report.revenue
    assert volume.amount == revenue.amount == 2 * big == 18_000_000_000_000_000_002
    assert type(volume.amount) is int and type(revenue.amount) is int


async def alert(
    conn: Conn,
    kind: str,
    created: datetime,
    subject: str | None = None,
    status: str = "OPEN",
    intent_id: str | None = None,
    occurrences: int = 1,
) -> int:
    """An alert raised at `created`, last seen an hour later; without a subject, a dead-letter alert of
    migration 0009's kind (keyed by stream and entry)."""
    row = await conn.fetchrow(
        """INSERT INTO pm.reconciliation_alert (kind, intent_id, stream, entry_id, subject, period, status,
                                                occurrences, created_at, last_seen_at, acknowledged_at,
                                                resolved_at)
           SELECT $1, $2, CASE WHEN $3::text IS NULL THEN 'pm:psp:results' END,
                  CASE WHEN $3::text IS NULL THEN gen_random_uuid()::text END,
                  $3, CASE WHEN $3::text IS NULL THEN NULL ELSE 'continuous' END, $4, $5,
                  t, t + interval '1 hour',
                  CASE WHEN $4 = 'ACKNOWLEDGED' THEN t END, CASE WHEN $4 = 'RESOLVED' THEN t END
           FROM (SELECT $6::timestamptz AS t) AS created
           RETURNING id""",
        kind,
        intent_id,
        subject,
        status,
        occurrences,
        created,
    )
    assert row is not None
    return int(row["id"])


async def test_open_alerts_are_counted_by_kind_and_the_oldest_listed(conn: Conn) -> None:
    first = at(DAY - timedelta(days=60))
    await alert(conn, "ledger_transfer_missing", first - timedelta(days=1), subject="gone", status="RESOLVED")
    acknowledged = await alert(
        conn, "psp_mismatch", first, subject="qp:1", status="ACKNOWLEDGED", occurrences=4
    )
    dead = await alert(conn, "psp_result_dead_lettered", first + timedelta(minutes=1), intent_id="0193-dead")
    missing = [
        await alert(conn, "ledger_transfer_missing", first + timedelta(hours=1, minutes=n), subject=f"t-{n}")
        for n in range(OLDEST_ALERTS + 5)
    ]

    report = await build(conn, Period.day(DAY))
    assert report.alert_counts == (
        AlertCount(kind="ledger_transfer_missing", status="OPEN", count=OLDEST_ALERTS + 5),
        AlertCount(kind="psp_mismatch", status="ACKNOWLEDGED", count=1),
        AlertCount(kind="psp_result_dead_lettered", status="OPEN", count=1),
    )
    assert report.open_alert_total == OLDEST_ALERTS + 7
    assert [a.id for a in report.open_alerts] == [acknowledged, dead, *missing[: OLDEST_ALERTS - 2]]
    listed = report.open_alerts[0]
    assert (listed.kind, listed.subject, listed.status, listed.occurrences) == (
        "psp_mismatch",
        "qp:1",
        "ACKNOWLEDGED",
        4,
    )
    assert (listed.created_at, listed.last_seen_at) == (first, first + timedelta(hours=1))
    assert (report.open_alerts[1].subject, report.open_alerts[1].intent_id) == (None, "0193-dead")


def psp(
    name: str, currency: str, ours: tuple[int, int], theirs: tuple[int, int, int], unknown: int = 0
) -> PspTotals:
    """A PSP's totals: ours (count, amount), theirs (count, amount, fee)."""
    return PspTotals(
        psp=name,
        currency=currency,
        settled_count=ours[0],
        settled_amount=ours[1],
        report_count=theirs[0],
        report_amount=theirs[1],
        report_fee=theirs[2],
        unknown=unknown,
    )


async def full_report(conn: Conn) -> tuple[Report, list[int]]:
    """DAY's intents, PSP, and alerts: one acknowledged with a hostile subject, one dead-letter alert
    without a subject, one whose subject a spreadsheet would take for a formula, one resolved."""
    await the_day(conn)
    ids = [
        await alert(conn, "psp_mismatch", at(DAY, 1), HOSTILE_SUBJECT, "ACKNOWLEDGED", "0193-x", 3),
        await alert(conn, "psp_result_dead_lettered", at(DAY, 2)),
        await alert(conn, "ledger_transfer_missing", at(DAY, 3), subject="=1+2"),
    ]
    await alert(conn, "ledger_transfer_missing", at(DAY, 0), subject="fixed", status="RESOLVED")
    totals = [
        psp("ipps", "THB", (1, 30_000), (1, 30_000, 25)),
        psp("qp", "RUB", (1, 100_000), (2, 100_500, 700), 1),
    ]
    return await build(conn, Period.day(DAY), totals), ids


def csv_row(section: str, currency: str, key: str, item: str, **cells: object) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(period="2026-12-02", section=section, currency=currency, key=key, item=item)
    row.update({name: str(value) for name, value in cells.items()})
    return row


async def test_the_csv_round_trips_with_the_expected_rows(conn: Conn) -> None:
    report, (hostile, dead, formula) = await full_report(conn)
    rows = list(csv.DictReader(io.StringIO(to_csv(report), newline="")))

    def oldest(
        kind: str, status: str, id_: int, hour: int, subject: str = "", intent: str = "", seen: int = 1
    ) -> dict[str, str]:
        """A listed alert raised at `hour` of DAY, seen last an hour later."""
        created, last_seen = at(DAY, hour).isoformat(), at(DAY, hour + 1).isoformat()
        return csv_row(
            "alerts",
            "",
            kind,
            "oldest",
            status=status,
            alert_id=id_,
            subject=subject,
            intent_id=intent,
            occurrences=seen,
            created_at=created,
            last_seen_at=last_seen,
        )

    assert rows == [
        csv_row("volume", "RUB", "SBP_TOPUP", "settled", count=1, amount=100_000),
        csv_row("volume", "THB", "P2P", "settled", count=2, amount=12_500),
        csv_row("volume", "THB", "PROMPTPAY_WITHDRAWAL", "settled", count=1, amount=30_000),
        csv_row("volume", "USD", "FX_EXCHANGE", "settled", count=1, amount=10_000),
        csv_row("fee", "RUB", "SBP_TOPUP", "fx_spread", count=1, amount=500),
        csv_row("fee", "THB", "P2P", "fee", count=1, amount=500),
        csv_row("fee", "THB", "PROMPTPAY_WITHDRAWAL", "fee", count=2, amount=1_250),
        csv_row("fee", "USD", "FX_EXCHANGE", "fx_spread", count=1, amount=50),
        csv_row("fx_bought", "THB", "SBP_TOPUP", "bought", count=1, amount=40_000, sold_currency="RUB"),
        csv_row("fx_bought", "THB", "FX_EXCHANGE", "bought", count=1, amount=356_334, sold_currency="USD"),
        csv_row("failure", "THB", HOSTILE_CODE, "failed", count=1, amount=100),
        csv_row("failure", "THB", "INSUFFICIENT_FUNDS", "failed", count=2, amount=11_000),
        csv_row("failure", "USD", "LIQUIDITY_INSUFFICIENT", "failed", count=1, amount=20_000),
        csv_row("psp", "RUB", "qp", "ours", count=1, amount=100_000),
        csv_row("psp", "RUB", "qp", "theirs", count=2, amount=100_500, fee=700),
        csv_row("psp", "RUB", "qp", "missing", count=0),
        csv_row("psp", "RUB", "qp", "unknown", count=1),
        csv_row("psp", "THB", "ipps", "ours", count=1, amount=30_000),
        csv_row("psp", "THB", "ipps", "theirs", count=1, amount=30_000, fee=25),
        csv_row("psp", "THB", "ipps", "missing", count=0),
        csv_row("psp", "THB", "ipps", "unknown", count=0),
        csv_row("alerts", "", "ledger_transfer_missing", "count", status="OPEN", count=1),
        csv_row("alerts", "", "psp_mismatch", "count", status="ACKNOWLEDGED", count=1),
        csv_row("alerts", "", "psp_result_dead_lettered", "count", status="OPEN", count=1),
        oldest("psp_mismatch", "ACKNOWLEDGED", hostile, 1, HOSTILE_SUBJECT, "0193-x", 3),
        oldest("psp_result_dead_lettered", "OPEN", dead, 2),
        oldest("ledger_transfer_missing", "OPEN", formula, 3, "'=1+2"),
    ]
    assert list(rows[0]) == list(COLUMNS)


class Tags(HTMLParser):
    """Every start tag of a page, and every attribute name on them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes.update(name for name, _ in attrs)


async def test_the_html_shows_every_figure_escaped_with_charts(conn: Conn) -> None:
    report, _ = await full_report(conn)
    page = to_html(report)
    generated = report.generated_at.strftime("%Y-%m-%d %H:%M:%S UTC")

    assert "<title>PM reconciliation report — day 2026-12-02</title>" in page
    assert f"Generated {generated}" in page
    figures = {  # each amount in major units, as a table cell
        "RUB": ["1,000.00", "5.00", "1,005.00", "7.00", "-5.00"],
        "THB": ["125.00", "300.00", "425.00", "12.50", "17.50", "400.00", "3,563.34", "3,963.34"]
        + ["110.00", "1.00", "0.25"],
        "USD": ["100.00", "0.50", "200.00"],
    }
    for currency, amounts in figures.items():
        assert f'id="currency-{currency}"' in page
        missing = [amount for amount in amounts if f">{amount}<" not in page]
        assert not missing, (currency, missing)
    assert "356334" not in page and "12500" not in page  # minor units are the CSV's
    assert "MISMATCH" in page and "matches" in page
    assert "Oldest unresolved alerts (all 3)" in page

    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and HOSTILE_CODE not in page
    assert "&lt;img src=x onerror=alert(&#x27;x&#x27;)&gt;&amp;" in page and HOSTILE_SUBJECT not in page
    parsed = Tags()
    parsed.feed(page)
    assert not {"script", "img", "link", "iframe", "object"} & set(parsed.tags)
    assert not {"src", "onerror", "onload"} & parsed.attributes
    assert "http" not in page.lower()
    # A chart of volumes per currency, of failures in THB and USD, of alerts by kind.
    assert parsed.tags.count("svg") == 6 and parsed.tags.count("rect") == 4 + 3 + 3


async def test_an_empty_period_reads_in_its_own_snapshot(reports_database_url: str) -> None:
    plain = await connect(reports_database_url)
    try:
        report = await build(plain, Period.parse("2031-01-06"))
        assert not plain.is_in_transaction()
    finally:
        await plain.close()
    assert report == Report(
        period="2031-01-06",
        start=at(date(2031, 1, 6), 0),
        end=at(date(2031, 1, 7), 0),
        generated_at=report.generated_at,
    )
    assert to_csv(report) == ",".join(COLUMNS) + "\r\n"
    page = to_html(report)
    assert "No intent settled or failed in this period." in page
    assert "No PSP settlement report for this period." in page and "No unresolved alert." in page
    assert "<svg" not in page


async def test_files_are_written_whole_and_replaced_atomically(
    conn: Conn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report, _ = await full_report(conn)
    directory = tmp_path / "reports"
    paths = write(report, directory)
    assert paths == [directory / "2026-12-02.csv", directory / "2026-12-02.html"]
    # As bytes: read_text would turn the CSV's CRLF line ends into LF.
    assert paths[0].read_bytes() == to_csv(report).encode()
    assert paths[1].read_bytes() == to_html(report).encode()
    assert sorted(p.name for p in directory.iterdir()) == ["2026-12-02.csv", "2026-12-02.html"]

    # A write that fails before its rename leaves the earlier file as it was and no temporary file.
    def refuse(self: Path, target: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(Path, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write(
            Report(period="2026-12-02", start=report.start, end=report.end, generated_at=report.generated_at),
            directory,
        )
    assert paths[0].read_bytes() == to_csv(report).encode()
    assert sorted(p.name for p in directory.iterdir()) == ["2026-12-02.csv", "2026-12-02.html"]


MALFORMED: tuple[str, ...] = (
    "2026-13-01",
    "2026-W54",
    "yesterday",
    "2026-02-29",
    "2025-W53",
    "2026-W00",
    "20261202",
    "",
)
MALFORMED += (
    "2026-W49-3",
    "2026-w49",
    " 2026-12-02",
    "2026-12-02\n",
    "２０２６-12-02",
    "9999-12-31",
    "9999-W52",
)


@pytest.mark.parametrize("text", MALFORMED)
def test_a_malformed_or_impossible_period_is_refused(text: str) -> None:
    with pytest.raises(PeriodError, match="period|day|week"):
        Period.parse(text)


def test_periods_have_utc_bounds_and_one_spelling() -> None:
    with pytest.raises(PeriodError, match=r"'2026-13-01' is not a real day"):
        Period.parse("2026-13-01")
    with pytest.raises(PeriodError, match="2026 has no week 54"):
        Period.parse("2026-W54")
    with pytest.raises(PeriodError, match="expected a UTC day YYYY-MM-DD or an ISO week YYYY-Www"):
        Period.parse("yesterday")

    w53 = Period.parse("2026-W53")
    assert (w53.start, w53.end) == (at(date(2026, 12, 28), 0), at(date(2027, 1, 4), 0))
    w01 = Period.parse("2026-W01")
    assert (w01.kind, w01.first_day, w01.last_day) == ("week", date(2025, 12, 29), date(2026, 1, 4))
    leap = Period.parse("2028-02-29")
    assert (leap.kind, leap.start, leap.end) == ("day", at(date(2028, 2, 29), 0), at(date(2028, 3, 1), 0))
    for text in ("2026-12-02", "2026-W49", "2026-W01", "2026-W53", "2021-W01"):
        assert str(Period.parse(text)) == text
    assert Period.week_of(date(2027, 1, 3)) == w53 and Period.week_of(date(2026, 1, 1)) == w01
    with pytest.raises(PeriodError, match="starts on a Monday"):
        Period("week", DAY)
    with pytest.raises(TypeError):
        Period.day(at(DAY))
