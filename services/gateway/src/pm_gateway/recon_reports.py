"""`GET /v1/admin/reconciliation/reports/{period}` (admin keys only): a day's or an ISO week's
reconciliation report, built now by `pm_shared.reconciliation.reports` (the same report the reconciler
writes on schedule and `pm recon report` writes on demand), in the media type `Accept` prefers: CSV,
the self-contained HTML page, or JSON (camelCase, minor units) — JSON too when `Accept` names none of
them, rather than a 406.

The PSP totals (`settlement.psp_totals`, from the settlement sweeps' stats) and the report are read in
one REPEATABLE READ snapshot, so the sections agree with each other.
"""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from pm_client.api import FieldError
from pm_client.recon_api import REPORT_MEDIA_TYPES, Report
from pm_gateway import web
from pm_gateway.auth import require_admin
from pm_gateway.problems import ProblemError
from pm_shared.reconciliation import reports, settlement

JSON, CSV, HTML = REPORT_MEDIA_TYPES


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an `Accept` header with their weights; a range whose `q` is not a number
    from 0 to 1 is left out (RFC 9110 §12.5.1)."""
    found: list[tuple[str, float]] = []
    for part in accept.split(","):
        media, *parameters = (p.strip() for p in part.split(";"))
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = -1.0
        if media and 0.0 <= weight <= 1.0:
            found.append((media.lower(), weight))
    return found


def _weight(ranges: list[tuple[str, float]], media: str) -> float:
    """How much `media` is wanted: the weight of the most specific range that matches it."""
    kind = media.split("/")[0]
    best = (-1, 0.0)
    for given, weight in ranges:
        rank = 2 if given == media else 1 if given == f"{kind}/*" else 0 if given == "*/*" else -1
        if rank > best[0]:
            best = (rank, weight)
    return best[1]


def negotiate(accept: str | None) -> str:
    """The media type to answer in: the one `Accept` weighs most (JSON on a tie, with no `Accept`, or
    when it accepts none of them)."""
    if not accept:
        return JSON
    ranges = _ranges(accept)
    chosen, weight = JSON, _weight(ranges, JSON)
    for media in (CSV, HTML):
        if (candidate := _weight(ranges, media)) > weight:
            chosen, weight = media, candidate
    return chosen


async def report(request: Request) -> Response:
    d = web.deps(request)
    given: str = web.inputs(request).params["period"]
    require_admin(await web.caller(request))
    try:
        period = reports.Period.parse(given)
    except reports.PeriodError as exc:
        raise ProblemError(
            422, "period_invalid", str(exc), errors=[FieldError(path="path.period", message=str(exc))]
        ) from None
    async with d.pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        psp = await settlement.psp_totals(conn, period.first_day, period.last_day)
        built = await reports.build(conn, period, psp)
    headers = {"Vary": "Accept"}
    media = negotiate(request.headers.get("accept"))
    if media == CSV:
        headers["Content-Disposition"] = f'attachment; filename="{period.label}.csv"'
        return Response(reports.to_csv(built), media_type=CSV, headers=headers)
    if media == HTML:
        return Response(reports.to_html(built), media_type=HTML, headers=headers)
    return web.json(msgspec.convert(built, Report, from_attributes=True), headers=headers)
