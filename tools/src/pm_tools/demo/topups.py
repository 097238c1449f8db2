"""`pm demo`'s SBP top-ups on the wire (the plan is `pm_tools.demo.topup_plan`): the QP sandbox found
first (the top-ups are left out, said in the notes, when it does not answer or refuses the secret),
then each top-up asked with `Prefer: wait` until its QR is there, asked again (the same intent and QR,
not priced again), its QR paid in the QP sandbox as a payer would (`POST /v1/sandbox/qrs/{id}/pay`,
docs/psp.md), and the intent followed to its end.

`pm up` runs the QP sandbox on `PM_QP_SANDBOX_PORT` (9202), its secret (`PM_QP_SANDBOX_SECRET`) shared
with adapter-qp's bearer token and the gateway's QP callback secret, all three "qp-sandbox-secret"
unless set; `QpSandbox.resolve` finds it the same way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from pm_client import api
from pm_client.client import PMClient, PMError
from pm_sandbox_qp.settings import Settings as QpSettings
from pm_shared.fleet import QP_SANDBOX
from pm_tools.demo.fx_traffic import Follow
from pm_tools.demo.plan import User
from pm_tools.demo.summary import Outcome
from pm_tools.demo.topup_plan import HOME

SECRET_VARIABLES = ("PM_QP_SANDBOX_SECRET", "PM_ADAPTER_QP_QP_SECRET", "PM_GATEWAY_QP_CALLBACK_SECRET")
"""Where a fleet's QP secret may be set: `pm up` gives one set on one side to the others."""
PAID = ("IN_PROGRESS", "ACCEPTED")
"""A QR's states once its payer paid (a sandbox that pays by itself, `AUTO_PAY`, may be first)."""
PROBE_ORDER = "pm-demo-probe"
"""An order no top-up is registered under: asking for it tells whether the secret is accepted."""


@dataclass(frozen=True)
class QpSandbox:
    """Where the demo pays its top-ups' QRs, and the bearer token the sandbox takes."""

    url: str
    secret: str

    @classmethod
    def resolve(cls, url: str | None, secret: str | None, environ: Mapping[str, str]) -> QpSandbox:
        """`url`, else this host at `PM_QP_SANDBOX_PORT` (9202); `secret`, else the fleet's QP secret
        from `environ` (SECRET_VARIABLES), else the sandbox's default (which the gateway's and
        adapter-qp's defaults agree with)."""
        port = environ.get(QP_SANDBOX.port_variable) or QP_SANDBOX.port
        found = next((environ[v] for v in SECRET_VARIABLES if environ.get(v)), None)
        return cls((url or f"http://127.0.0.1:{port}").rstrip("/"), secret or found or QpSettings().secret)

    def http(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self.secret}"}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=10.0)


async def qp_preflight(qp: QpSandbox | None) -> str | None:
    """None when the QP sandbox answers and takes the secret; else why the top-ups are left out."""
    if qp is None:
        return "SBP top-ups left out: no QP sandbox to pay their QRs in was given"
    try:
        async with qp.http() as http:
            health = await http.get("/healthz")
            probe = await http.get("/v1/qrs", params={"order": PROBE_ORDER}) if health.is_success else None
    except httpx.HTTPError as exc:
        return (
            f"SBP top-ups left out: no QP sandbox answers at {qp.url} ({type(exc).__name__}); `make up` "
            "runs one on PM_QP_SANDBOX_PORT (9202), or give --qp-sandbox"
        )
    if probe is None:
        return f"SBP top-ups left out: the QP sandbox at {qp.url} is not healthy ({health.status_code})"
    if (probe.status_code, _code(probe)) == (401, "UNAUTHORIZED"):
        return (
            f"SBP top-ups left out: the QP sandbox at {qp.url} refused the secret; give the fleet's "
            "with --qp-secret (or PM_QP_SANDBOX_SECRET)"
        )
    # Only a QP sandbox knows the order is not there: anything else at that port could not be paid in.
    if (probe.status_code, _code(probe)) != (404, "QR_NOT_FOUND"):
        return (
            f"SBP top-ups left out: what answers at {qp.url} is no QP sandbox (a lookup answered "
            f"{probe.status_code} {probe.text[:100]})"
        )
    return None


def _code(response: httpx.Response) -> object:
    """The problem code of a QP answer (None: not a problem document)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


def _http_error(exc: httpx.HTTPError, doing: str) -> str:
    return f"{type(exc).__name__}: {exc} ({doing})"


@dataclass
class Topups:
    """The run's top-ups, asked with the admin key (`client`) and paid in the QP sandbox `qp`."""

    client: PMClient
    follow: Follow
    wait_s: float
    qp: QpSandbox | None
    notes: list[str] = field(default_factory=list)

    async def reachable(self) -> bool:
        """Whether the QP sandbox can be paid in; a note says why not."""
        note = await qp_preflight(self.qp)
        if note is not None:
            self.notes.append(note)
        return note is None

    def _body(self, outcome: Outcome) -> api.CreateIntent:
        p = outcome.planned
        assert isinstance(p.payee, User) and p.payer is not None, "a top-up is paid by SBP into a user"
        return api.CreateIntent(
            type="SBP_TOPUP",
            amount=p.amount,
            currency=HOME,
            from_=api.SbpParty(),
            to=api.UserParty(id=p.payee.id),
            from_name=p.payer.name,
            to_name=p.payee.name,
            comment=p.comment or None,
            metadata={"demo": "pm demo"},
        )

    async def _ask(self, outcome: Outcome, body: api.CreateIntent, wait: float) -> api.Intent | None:
        """POST the top-up (again); None when refused or lost (said on `outcome`)."""
        try:
            return await self.client.create_intent(body, idempotency_key=outcome.planned.key, wait=wait)
        except PMError as exc:
            outcome.error = f"{exc} (asking the top-up)"
        except httpx.TransportError as exc:
            outcome.error = _http_error(exc, "asking the top-up")
        return None

    async def _shown(self, outcome: Outcome, body: api.CreateIntent) -> api.Intent | None:
        """The top-up once it shows a QR, asked until it does (a POST with `Prefer: wait` answers as
        soon as the QR is there, and the same POST again finds the same intent); None when it ended or
        gave up first (`outcome` says so)."""
        deadline = time.monotonic() + self.wait_s
        first: str | None = None
        while (intent := await self._ask(outcome, body, deadline - time.monotonic())) is not None:
            if first is not None and intent.id != first:
                outcome.error = f"the same top-up asked again made {intent.id}, not {first}"
                return None
            first, outcome.intent = intent.id, intent
            if intent.payment is not None:
                return intent
            if intent.status in api.TERMINAL_STATES:
                return None  # it ended without a QR: its state is the outcome
            if time.monotonic() > deadline:
                outcome.error = f"no QR to pay after {self.wait_s:.0f}s (is adapter-qp running?)"
                return None
        return None

    async def topup(self, outcome: Outcome) -> None:
        """Ask the top-up, check that asking again is the same intent and QR, pay its QR in the QP
        sandbox, and follow it to its end."""
        body = self._body(outcome)
        intent = await self._shown(outcome, body)
        if intent is None or intent.payment is None:
            return
        outcome.payment = intent.payment
        again = await self._ask(outcome, body, 1)
        if again is None:
            return
        if (again.id, again.payment) != (intent.id, intent.payment):
            outcome.error = f"asked again, the top-up answered {again.id} {again.payment}, not its QR"
            return
        if await self._pay(outcome, intent.payment):
            await self.follow(self.client, intent.id, outcome)

    async def _pay(self, outcome: Outcome, payment: api.Payment) -> bool:
        """Pay the QR as its payer would; False when the sandbox would not (said on `outcome`)."""
        assert self.qp is not None, "reachable() first"
        qr = payment.psp_reference
        if qr is None:
            outcome.error = f"its QR {payment.link} names no QP reference to pay"
            return False
        try:
            async with self.qp.http() as http:
                paid = await http.post(f"/v1/sandbox/qrs/{qr}/pay")
                # Not payable: paid already, by a sandbox that pays by itself (AUTO_PAY)?
                shown = await http.get(f"/v1/qrs/{qr}") if paid.status_code == 409 else None
        except httpx.HTTPError as exc:
            outcome.error = _http_error(exc, f"paying QR {qr}")
            return False
        if paid.is_success or (shown is not None and shown.is_success and shown.json().get("status") in PAID):
            return True
        outcome.error = f"the QP sandbox answered {paid.status_code} {paid.text[:200]} (paying QR {qr})"
        return False
