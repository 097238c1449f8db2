"""PSP settlement reports: the daily CSV in which a PSP lists the transactions it finished, and reading one.

Each PSP publishes one report per UTC day, `GET <PSP base URL>/v1/settlements/<YYYY-MM-DD>`, answered
`text/csv` (UTF-8): a header line naming `COLUMNS` in this order, then one line per transaction that
reached a final state on that day (today's report is the day so far; a day with nothing is the header
alone). The request is authenticated like every other call to that PSP (IPPS: `X-IPPS-Signature`
when a secret is configured, `pm_shared.psp.ipps_signing`; QP: `Authorization: Bearer <secret>`).

Columns, in this order:

- `psp_reference`: the PSP's own id of the transaction: IPPS's `transfer_id`, QP's `qr_id`; what PM
  keeps as `pm.psp_tx_map.psp_transfer_id` (and results carry as `psp_reference`).
- `merchant_reference`: OUR reference, the idempotency key PM sent (IPPS's `Idempotency-Key`, QP's
  `order`), i.e. `pm.psp_tx_map.idempotency_key` (unique): the column that joins a line to PM's attempt.
- `type`: `payout` (money PM sent out: IPPS) or `collection` (money PM collected: QP).
- `amount`: the transaction's amount, an integer in minor units (satang, kopecks).
- `currency`: ISO 4217, three capital letters.
- `fee`: what the PSP charges for it, an integer in minor units (each PSP's schedule: docs/psp.md).
- `status`: `SUCCEEDED` (the money moved) or `FAILED` (nothing moved), the words of
  `pm.psp_tx_map.status`; each PSP maps its own (IPPS: SUCCESS, FAILED; QP: ACCEPTED, and REJECTED
  or EXPIRED for FAILED).
- `settled_at`: when the transaction became final, ISO-8601 with a zero UTC offset (`Z` or `+00:00`).

`parse` is strict: a wrong header, a line with another number of fields, an empty reference, an
amount or fee that is not a whole non-negative number of minor units (no sign, no decimals, no
leading zeros), an unknown type or status, a malformed currency or a time without a UTC offset raise
`SettlementReportError` naming the line (counted from 1, the header) and the field. Duplicate lines
are no format error: they are for the reader to notice (one key, one payment). A leading UTF-8 BOM
and CRLF line ends are accepted; blank lines are not.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal, get_args

import httpx
import msgspec

from pm_shared.errors import PMError
from pm_shared.psp import ipps_signing

__all__ = [
    "COLUMNS",
    "MEDIA_TYPE",
    "LineStatus",
    "LineType",
    "SettlementFetchError",
    "SettlementLine",
    "SettlementReportError",
    "fetch_report",
    "parse",
    "parse_day",
    "render",
    "report_path",
]

COLUMNS: tuple[str, ...] = (
    "psp_reference",
    "merchant_reference",
    "type",
    "amount",
    "currency",
    "fee",
    "status",
    "settled_at",
)
MEDIA_TYPE = "text/csv"
PSPS = ("ipps", "qp")
"""The PSPs `fetch_report` knows how to authenticate to (`pm.psp_tx_map.psp`)."""

LineType = Literal["payout", "collection"]
LineStatus = Literal["SUCCEEDED", "FAILED"]
_TYPES: dict[str, LineType] = {word: word for word in get_args(LineType)}
_STATUSES: dict[str, LineStatus] = {word: word for word in get_args(LineStatus)}
_MINOR_UNITS = re.compile(r"0|[1-9][0-9]{0,17}")
_CURRENCY = re.compile(r"[A-Z]{3}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class SettlementLine(msgspec.Struct, frozen=True, kw_only=True):
    """One transaction of a report (the columns in `COLUMNS`; money in integer minor units)."""

    psp_reference: str
    """The PSP's id: IPPS's transfer id, QP's QR id (`pm.psp_tx_map.psp_transfer_id`)."""
    merchant_reference: str
    """Our idempotency key as sent to the PSP (`pm.psp_tx_map.idempotency_key`)."""
    type: LineType
    amount: int
    currency: str
    fee: int
    status: LineStatus
    settled_at: datetime
    """Timezone-aware, UTC."""


class SettlementReportError(PMError):
    """A report that is not a well-formed settlement report: `line` (1 = the header) and `field` say where."""

    def __init__(self, line: int, field: str | None, message: str) -> None:
        where = f"line {line}" + (f", field {field}" if field else "")
        super().__init__(f"settlement report {where}: {message}")
        self.line = line
        self.field = field
        self.message = message


class SettlementFetchError(PMError):
    """No report came back: a transport error (`http_status` None) or an answer other than 200 text/csv.

    `code` is the PSP's problem code when it sent `application/problem+json`, else `HTTP_<status>`
    (or `UNREACHABLE`, `NOT_CSV`). `transient`: asking again later may succeed (no answer, or a 5xx).
    """

    def __init__(self, message: str, *, http_status: int | None, code: str) -> None:
        super().__init__(message)
        self.http_status = http_status
        self.code = code

    @property
    def transient(self) -> bool:
        return self.http_status is None or self.http_status >= 500


def report_path(day: date) -> str:
    """The path of `day`'s report on a PSP: `/v1/settlements/YYYY-MM-DD`."""
    return f"/v1/settlements/{day.isoformat()}"


def parse_day(text: str) -> date | None:
    """The UTC day `YYYY-MM-DD` names (exactly that form), or None when it names none."""
    if not _DAY.fullmatch(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _timestamp(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render(lines: Iterable[SettlementLine]) -> str:
    """The report for `lines`, in their order: the header, then one CSV line each (LF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for line in lines:
        writer.writerow(
            (
                line.psp_reference,
                line.merchant_reference,
                line.type,
                line.amount,
                line.currency,
                line.fee,
                line.status,
                _timestamp(line.settled_at),
            )
        )
    return out.getvalue()


def _text(number: int, field: str, value: str) -> str:
    if not value or value != value.strip():
        raise SettlementReportError(number, field, f"{value!r} is empty or has surrounding spaces")
    return value


def _minor_units(number: int, field: str, value: str) -> int:
    if not _MINOR_UNITS.fullmatch(value):
        raise SettlementReportError(
            number, field, f"{value!r} is not a whole non-negative number of minor units"
        )
    return int(value)


def _settled_at(number: int, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value) if "T" in value else None
    except ValueError:
        parsed = None
    if parsed is None:
        raise SettlementReportError(number, "settled_at", f"{value!r} is not an ISO-8601 date and time")
    if parsed.utcoffset() != timedelta(0):
        raise SettlementReportError(number, "settled_at", f"{value!r} is not in UTC (Z or +00:00)")
    return parsed.astimezone(UTC)


def _line(number: int, row: Sequence[str], day: date | None) -> SettlementLine:
    if len(row) != len(COLUMNS):
        raise SettlementReportError(number, None, f"{len(row)} fields where the header has {len(COLUMNS)}")
    psp_reference, merchant_reference, type_word, amount, currency, fee, status_word, settled_at = row
    type_ = _TYPES.get(type_word)
    if type_ is None:
        raise SettlementReportError(number, "type", f"{type_word!r} is not one of {sorted(_TYPES)}")
    status = _STATUSES.get(status_word)
    if status is None:
        raise SettlementReportError(number, "status", f"{status_word!r} is not one of {sorted(_STATUSES)}")
    if not _CURRENCY.fullmatch(currency):
        raise SettlementReportError(number, "currency", f"{currency!r} is not an ISO 4217 code")
    line = SettlementLine(
        psp_reference=_text(number, "psp_reference", psp_reference),
        merchant_reference=_text(number, "merchant_reference", merchant_reference),
        type=type_,
        amount=_minor_units(number, "amount", amount),
        currency=currency,
        fee=_minor_units(number, "fee", fee),
        status=status,
        settled_at=_settled_at(number, settled_at),
    )
    if day is not None and line.settled_at.date() != day:
        raise SettlementReportError(number, "settled_at", f"{settled_at!r} is not on the report's day {day}")
    return line


def parse(csv_text: str, day: date | None = None) -> list[SettlementLine]:
    """Every line of a settlement report, in the report's order; `SettlementReportError` on any flaw.

    With `day`, a line settled on another UTC day is a flaw too (a report covers one day).
    """
    reader = csv.reader(io.StringIO(csv_text.removeprefix("\ufeff"), newline=""), strict=True)
    lines: list[SettlementLine] = []
    try:
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise SettlementReportError(1, None, f"the header must be {','.join(COLUMNS)}, got {header!r}")
        for row in reader:
            if not row:
                raise SettlementReportError(reader.line_num, None, "an empty line")
            lines.append(_line(reader.line_num, row, day))
    except csv.Error as exc:
        raise SettlementReportError(reader.line_num, None, f"not CSV: {exc}") from exc
    return lines


def _auth_headers(psp: str, secret: str, path: str) -> dict[str, str]:
    if psp == "ipps":
        if not secret:
            return {}
        t = int(time.time())
        return {
            ipps_signing.HEADER: ipps_signing.sign(
                secret, t, ipps_signing.request_message(t, "GET", path, b"")
            )
        }
    if psp == "qp":
        return {"Authorization": f"Bearer {secret}"} if secret else {}
    raise ValueError(f"no settlement reports from PSP {psp!r}: one of {PSPS}")


def _problem_code(response: httpx.Response) -> str:
    if response.headers.get("content-type", "").startswith("application/problem+json"):
        try:
            body = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("code"), str):
            return str(body["code"])
    return f"HTTP_{response.status_code}"


async def fetch_report(
    client: httpx.AsyncClient, psp: str, base_url: str, day: date, *, secret: str = ""
) -> list[SettlementLine]:
    """`day`'s settlement report from `psp` (`ipps` or `qp`) at `base_url`, parsed (`parse` with `day`).

    The request is authenticated as the adapters call that PSP, with `secret`: IPPS's request-signing
    secret (`PM_ADAPTER_IPPS_IPPS_AUTH_SECRET`; empty: unsigned), QP's bearer token
    (`PM_ADAPTER_QP_QP_SECRET`). Raises `SettlementFetchError` when no report comes back,
    `SettlementReportError` when what came back is no well-formed report, `ValueError` for another PSP.
    The client's own timeout applies.
    """
    url = httpx.URL(base_url.rstrip("/") + report_path(day))
    headers = {"Accept": MEDIA_TYPE, **_auth_headers(psp, secret, url.raw_path.decode("ascii"))}
    try:
        response = await client.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise SettlementFetchError(
            f"{psp} settlement report {day}: {type(exc).__name__} {exc}", http_status=None, code="UNREACHABLE"
        ) from exc
    if response.status_code != 200:
        code = _problem_code(response)
        raise SettlementFetchError(
            f"{psp} settlement report {day}: HTTP {response.status_code} {code}: {response.text[:200]}",
            http_status=response.status_code,
            code=code,
        )
    media_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != MEDIA_TYPE:
        raise SettlementFetchError(
            f"{psp} settlement report {day}: answered {media_type or 'no content type'}, not {MEDIA_TYPE}",
            http_status=response.status_code,
            code="NOT_CSV",
        )
    return parse(response.text, day)
