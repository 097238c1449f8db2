"""Contract: the live gateway keeps the promises of the OpenAPI document it serves, as schemathesis checks.

Schemathesis 4 reads `GET /openapi.json` from a running `pm-gateway` and, for every operation, sends
its coverage phase (boundary values, missing required headers, undeclared methods and media types)
in positive and negative mode, then `EXAMPLES` fuzzed requests per generation mode. Every response
goes through every schemathesis check that applies without a stateful run (`STATEFUL_ONLY` names
the others and why). A request is signed over the exact bytes sent: the service-key signature with
the admin key on the signed API (so authorization never hides validation), the PSP's own signature
on the callbacks under /v1/webhooks; a credential the case itself negates or leaves out stays as
generated. So what this proves, when green, is: no input makes the gateway answer 5xx; every
answer has a declared status, media type, headers and body shape; what the schema allows is
accepted (but for the business refusals in `BUSINESS_REFUSALS`) and what it forbids is refused;
required headers are required, undeclared methods get 405, and the signed API rejects requests
without valid credentials.

The gateway runs on a throw-away database migrated for this module (`database_url` below), the test
Redis database (`PM_TEST_REDIS_DB`) and the test callback secrets; Hypothesis is derandomized with
no example database, so a run is reproducible. Every finding is collected, and all are reported at
once, grouped by operation, check and status.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from redis.asyncio import Redis
from requests.structures import CaseInsensitiveDict
from schemathesis.checks import CHECKS, load_all_checks, max_response_time
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.core.parameters import ParameterLocation
from schemathesis.core.result import Err
from schemathesis.generation.hypothesis.builder import HypothesisTestConfig, HypothesisTestMode, create_test
from schemathesis.generation.meta import negated_parameters

from pm_client import signing
from pm_gateway.settings import Settings
from pm_shared.reconciliation import requests as recon_requests
from pm_tools.testing.contract_refusals import BUSINESS_REFUSALS
from pm_tools.testing.gateway import PROXY_SECRET, Gateway, Key

IPPS_SECRET = "ipps-test-secret"  # the callback secrets `webhook_settings` gives the gateway
QP_SECRET = "qp-test-secret"
WebhookSettings = Callable[..., Settings]
ServeGateway = Callable[[Settings], AbstractAsyncContextManager[str]]
Case = schemathesis.Case[Any]

EXAMPLES = 20
"""Fuzzed requests per operation and generation mode (the coverage phase comes on top)."""
RESPONSE_TIME_LIMIT_S = 5.0
"""`max_response_time`: nothing here waits on purpose, so a slower answer is a hang worth reporting."""

STATEFUL_ONLY = {
    "use_after_free": "needs a DELETE followed by a read of the deleted resource (links between operations)",
    "ensure_resource_availability": "needs a resource created by one operation then read by another",
    "object_level_authorization": "needs several identities replaying each other's reads",
}
"""The schemathesis checks not run here, and why: each needs what only a stateful run has."""


def _business_refusal(label: str, response: httpx.Response) -> bool:
    try:
        problem = response.json()
    except ValueError:
        return False
    if not isinstance(problem, dict):
        return False
    return any(
        refusal.status == response.status_code
        and refusal.code == problem.get("code")
        and refusal.detail in str(problem.get("detail", ""))
        for refusal in BUSINESS_REFUSALS.get(label, ())
    )


def _integral_floats(value: Any) -> bool:
    if isinstance(value, float):
        return value.is_integer()
    if isinstance(value, dict):
        return any(_integral_floats(v) for v in value.values())
    if isinstance(value, list):
        return any(_integral_floats(v) for v in value)
    return False


def _documented_float_refusal(request: httpx.Request, response: httpx.Response) -> bool:
    """An integer written as `682.0` is refused (422), as the document says in prose (every amount's
    description, the info block): JSON Schema counts 682.0 an integer, so its vocabulary cannot say
    so, and schemathesis generates such numbers as valid data. Any other refusal is still a finding."""
    try:
        problem, body = response.json(), json.loads(request.content or b"null")
    except ValueError:
        return False
    return (
        response.status_code == 422
        and isinstance(problem, dict)
        and problem.get("code") == "validation_failed"
        and re.match(r"Expected `int( \| null)?`, got `float`", str(problem.get("detail", ""))) is not None
        and _integral_floats(body)
    )


@pytest.fixture
def database_url(fresh_database_url: str) -> str:
    """This module's gateway (keys, intents, rules) lives on a throw-away database, created and migrated
    for it and dropped afterwards, not on the session's (overrides `pm_tools.testing.db.database_url`)."""
    return fresh_database_url


# --- what a finding is ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    operation: str
    check: str
    status: int | None
    title: str
    request: str
    response: str


@dataclass
class Run:
    findings: list[Finding] = field(default_factory=list)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    sent: int = 0


def _excerpt(data: bytes | str, limit: int = 240) -> str:
    text = data.decode("utf-8", "backslashreplace") if isinstance(data, bytes) else data
    return repr(text[:limit]) + ("…" if len(text) > limit else "")


_UNREPORTED_HEADERS = {"host", "content-length", "x-pm-timestamp", "x-pm-nonce", "x-pm-signature"}


def _summary(request: httpx.Request, case: Case) -> str:
    meta = case.meta
    origin = f"{meta.phase.name.value}/{meta.generation.mode.value}" if meta is not None else "?"
    described = getattr(meta.phase.data, "description", None) if meta is not None else None
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _UNREPORTED_HEADERS}
    return (
        f"[{origin}{': ' + described if described else ''}] {request.method} "
        f"{request.url.raw_path.decode('ascii')} headers={headers} body={_excerpt(request.content)}"
    )


# --- the schema and its configuration -------------------------------------------------------------


def _config(url: str, mode: str) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "base-url": url,
            "suppress-health-check": ["all"],
            "generation": {"mode": mode, "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
            "checks": {
                "max_response_time": RESPONSE_TIME_LIMIT_S,
                "positive_data_acceptance": {"expected-statuses": ["2xx", "5xx"]},  # see BUSINESS_REFUSALS
            },
        }
    )


def _schema(url: str, document: dict[str, Any], admin: Key) -> schemathesis.BaseSchema:
    schema = schemathesis.openapi.from_dict(document, config=_config(url, "all"))

    # The admin key's id on every operation that asks for one (the signature is added when the request
    # is sent, over its bytes); schemathesis leaves it out where the case negates the credential.
    @schema.auth(refresh_interval=None)
    class ServiceKey:
        def get(self, case: Case, ctx: schemathesis.AuthContext) -> str | None:
            return admin.key_id if case.operation.definition.raw.get("security") else None

        def set(self, case: Case, data: str, ctx: schemathesis.AuthContext) -> None:
            case.headers[signing.KEY_HEADER] = data

    return schema


def _checks() -> list[schemathesis.CheckFunction]:
    load_all_checks()
    registered = set(CHECKS.get_all_names())
    assert set(STATEFUL_ONLY) <= registered, "a check named in STATEFUL_ONLY is gone: update the list"
    chosen: list[schemathesis.CheckFunction] = []
    for name in sorted(registered - set(STATEFUL_ONLY)):
        check = CHECKS.get_one(name)
        assert not isinstance(check, type), f"{name} is a class-based check: run its after_run too"
        chosen.append(check)
    return [*chosen, max_response_time]


# --- requests as sent: signed over their exact bytes ----------------------------------------------


def _hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _psp_headers(case: Case, path: str, body: bytes) -> dict[str, str]:
    """Valid PSP signature headers for a callback, but for those the case negates or leaves out."""
    headers: Mapping[str, Any] = case.headers or {}
    negated = {
        name.lower() for name, where in negated_parameters(case.meta) if where == ParameterLocation.HEADER
    }
    component = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
    if component is not None and component.mode.is_negative and not negated:
        return {}  # the header set as a whole is negated (dropped or replaced): it stays as generated
    now = str(int(time.time()))
    sent: dict[str, str] = {}
    if path == "/v1/webhooks/ipps" and "x-ipps-signature" not in negated and "X-IPPS-Signature" in headers:
        sent["X-IPPS-Signature"] = f"t={now},v1={_hex(IPPS_SECRET, f'{now}.'.encode() + body)}"
    if path == "/v1/webhooks/qp":
        timestamp = headers.get("X-QP-Timestamp") if "x-qp-timestamp" in negated else now
        if "X-QP-Timestamp" in headers and "x-qp-timestamp" not in negated:
            sent["X-QP-Timestamp"] = now
        if "X-QP-Signature" in headers and "x-qp-signature" not in negated and timestamp is not None:
            sent["X-QP-Signature"] = _hex(QP_SECRET, f"{timestamp}.".encode() + body)
    return sent


def _front_door_headers(case: Case) -> dict[str, str]:
    """The proxy secret nginx adds on `/v1/me`, but where the case negates or leaves it out."""
    headers: Mapping[str, Any] = case.headers or {}
    negated = {
        name.lower() for name, where in negated_parameters(case.meta) if where == ParameterLocation.HEADER
    }
    component = case.meta.components.get(ParameterLocation.HEADER) if case.meta is not None else None
    if component is not None and component.mode.is_negative and not negated:
        return {}
    if "X-PM-Proxy-Secret" in headers and "x-pm-proxy-secret" not in negated:
        return {"X-PM-Proxy-Secret": PROXY_SECRET}
    return {}


def _request(case: Case, url: str, admin: Key) -> httpx.Request:
    """The case as schemathesis' own transport would serialize it, then signed over what goes on the wire:
    httpx sends `url.raw_path` and `content` verbatim, and both are what the signatures cover."""
    kwargs = case.as_transport_kwargs(base_url=url)
    unknown = set(kwargs) - {"method", "url", "headers", "params", "cookies", "json", "data"}
    assert not unknown, f"transport arguments this harness does not send: {unknown}"
    prepared = requests.Request(
        method=kwargs["method"],
        url=kwargs["url"],
        headers=kwargs.get("headers"),
        params=kwargs.get("params"),
        cookies=kwargs.get("cookies"),
        json=kwargs.get("json"),
        data=kwargs.get("data"),
    ).prepare()
    raw = prepared.body
    if not (raw is None or isinstance(raw, str | bytes)):
        raise TypeError(f"a body this harness cannot sign: {type(raw)}")
    body = raw.encode() if isinstance(raw, str) else raw or b""
    headers = [
        (name.encode("latin-1"), value.encode("latin-1") if isinstance(value, str) else value)
        for name, value in prepared.headers.items()
        if name.lower() != "content-length"
    ]
    request = httpx.Request(str(prepared.method), str(prepared.url), headers=headers, content=body)
    target = request.url.raw_path.decode("ascii")
    if case.operation.definition.raw.get("security"):
        # Signed only when the case carries the admin key's id; a negated credential stays unsigned.
        if case.headers and case.headers.get(signing.KEY_HEADER) == admin.key_id:
            request.headers.update(signing.headers(admin.key_id, admin.secret, request.method, target, body))
    elif case.operation.path.startswith("/v1/me/"):
        request.headers.update(_front_door_headers(case))
    else:
        request.headers.update(_psp_headers(case, case.operation.path, body))
    return request


def _received(request: httpx.Request, response: httpx.Response) -> schemathesis.Response:
    """The answer as schemathesis' checks read it, with the request exactly as it was sent."""
    sent = requests.PreparedRequest()
    sent.method = request.method
    sent.url = str(request.url)
    sent.headers = CaseInsensitiveDict({k: v for k, v in request.headers.items()})
    sent.body = request.content
    sent.prepare_cookies(None)
    headers: defaultdict[str, list[str]] = defaultdict(list)
    for name, value in response.headers.multi_items():
        headers[name].append(value)
    return schemathesis.Response(
        status_code=response.status_code,
        headers=dict(headers),
        content=response.content,
        request=sent,
        elapsed=response.elapsed.total_seconds(),
        verify=True,
        message=response.reason_phrase,
        http_version=response.http_version.removeprefix("HTTP/"),
        encoding=response.encoding,
    )


# --- the run --------------------------------------------------------------------------------------


def _exercise(
    case: Case,
    *,
    url: str,
    admin: Key,
    http: httpx.Client,
    checks: list[schemathesis.CheckFunction],
    run: Run,
) -> None:
    label = case.operation.label
    try:
        request = _request(case, url, admin)
        response = http.send(request)
    except Exception as exc:  # a harness or transport error is a finding too, never a lost example
        run.findings.append(Finding(label, "harness", None, repr(exc), repr(case), ""))
        return
    run.sent += 1
    run.statuses[(label, response.status_code)] += 1
    received = _received(request, response)
    for check in checks:
        try:
            case.validate_response(received, checks=[check], transport_kwargs={"base_url": url})
        except FailureGroup as group:
            failures: list[Failure] = list(group.exceptions)
        except Exception as exc:
            failures = [Failure(operation=label, title="the check raised", message=repr(exc))]
        else:
            continue
        if check.__name__ == "positive_data_acceptance" and (
            _business_refusal(label, response) or _documented_float_refusal(request, response)
        ):
            continue
        for failure in failures:
            title = f"{failure.title}: {failure.message}".replace("\n", " ")
            summary = _summary(request, case)
            run.findings.append(
                Finding(
                    label, check.__name__, response.status_code, title, summary, _excerpt(response.content)
                )
            )


def _passes(url: str) -> Iterator[tuple[list[HypothesisTestMode], schemathesis.Config]]:
    """Examples and the coverage phase (both modes at once: they are explicit cases), then fuzzing in
    each generation mode on its own, so each gets `EXAMPLES` requests."""
    yield [HypothesisTestMode.EXAMPLES, HypothesisTestMode.COVERAGE], _config(url, "all")
    yield [HypothesisTestMode.FUZZING], _config(url, "positive")
    yield [HypothesisTestMode.FUZZING], _config(url, "negative")


def run_contract(url: str, admin: Key) -> Run:
    """Every operation of the served document through every pass; blocking (run it in a thread)."""
    run = Run()
    checks = _checks()
    with httpx.Client(timeout=30) as http:
        document = http.get(url + "/openapi.json").raise_for_status().json()
        schema = _schema(url, document, admin)
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation schemathesis cannot read is a finding
                run.findings.append(Finding("?", "schema", None, repr(result.err()), "", ""))
                continue
            operation = result.ok()

            def test(case: Case) -> None:
                _exercise(case, url=url, admin=admin, http=http, checks=checks, run=run)

            for modes, config in _passes(url):
                project = config.projects.get_default()
                settings = hypothesis.settings(
                    project.get_hypothesis_settings(
                        operation=operation, phase="fuzzing", apply_ci_profile=False
                    ),
                    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                )
                hypothesis_test = create_test(
                    operation=operation,
                    test_func=test,
                    config=HypothesisTestConfig(
                        project=project, modes=modes, settings=settings, apply_ci_profile=False
                    ),
                )
                hypothesis_test()
    return run


# --- the report -----------------------------------------------------------------------------------


def report(findings: list[Finding]) -> str:
    groups: dict[tuple[str, str, int | None], list[Finding]] = defaultdict(list)
    for finding in findings:
        groups[(finding.operation, finding.check, finding.status)].append(finding)
    lines = [f"{len(findings)} findings in {len(groups)} groups (operation, check, status):"]
    for (operation, check, status), found in sorted(
        groups.items(), key=lambda g: (g[0][0], g[0][1], g[0][2] or 0)
    ):
        first = found[0]
        lines += [
            f"\n== {operation} | {check} | {status} | ×{len(found)}",
            f"   {first.title[:400]}",
            f"   request:  {first.request[:600]}",
            f"   response: {first.response}",
        ]
    return "\n".join(lines)


# --- the test -------------------------------------------------------------------------------------


async def _forget_sweep_requests(redis: Redis, key_id: str) -> None:
    """Take the sweep requests `key_id` queued off the reconcilers' list: no reconciler runs them later."""
    for raw in await redis.lrange(recon_requests.REQUESTS_KEY, 0, -1):
        text = raw.decode() if isinstance(raw, bytes) else raw  # JSON: UTF-8, the same bytes again
        if recon_requests.decode(text.encode()).requested_by == key_id:
            await redis.lrem(recon_requests.REQUESTS_KEY, 0, text)


async def test_the_gateway_keeps_the_contract_of_its_openapi_document(
    gateway: Gateway, webhook_settings: WebhookSettings, serve_gateway: ServeGateway, clean: Redis
) -> None:
    # `gateway` provides the intake streams and the admin key (in this module's database); the gateway
    # under test is `pm-gateway`'s own, with the test callback secrets and the same key encryption key.
    # Nothing waits here: no ledger-writer opens wallets and no orchestrator finishes intents, so a
    # wallet answers 202 at once and `Prefer: wait` is capped at 0 s (still parsed and validated).
    settings = webhook_settings(
        PM_KEY_ENCRYPTION_KEY=gateway.settings.key_encryption_key,
        PM_GATEWAY_WALLET_OPEN_WAIT_S="0",
        PM_GATEWAY_MAX_WAIT_S="0",
        PM_GATEWAY_PROXY_SECRET=PROXY_SECRET,
    )
    try:
        async with serve_gateway(settings) as url:
            # The gateway runs in this event loop; schemathesis drives it from a thread meanwhile.
            run = await asyncio.to_thread(run_contract, url, gateway.admin)
    finally:
        await _forget_sweep_requests(clean, gateway.admin.key_id)

    # The harness itself: requests went out, and validly signed ones were accepted on both kinds of
    # signature (were they not, positive_data_acceptance would say so for every operation too).
    accepted = {label for (label, status), _ in run.statuses.items() if 200 <= status < 300}
    expected = {
        "POST /v1/webhooks/ipps",
        "POST /v1/webhooks/qp",
        "GET /v1/admin/keys",
        "POST /v1/intents",  # reachable as valid data since the document states the parties per type
        "POST /v1/fees/dry-run",
        "POST /v1/admin/fee-rules",
        "GET /v1/me/payment-requests",  # the front door's proxy secret is added where it belongs
        "GET /v1/admin/reconciliation/alerts",
        "POST /v1/admin/reconciliation/runs",  # queued on the test Redis, taken off again after the run
    }
    harness = run.sent >= 1000 and expected <= accepted
    if not harness or run.findings:
        said = "" if harness else f"HARNESS: {run.sent} requests sent; 2xx for {sorted(accepted)}\n"
        pytest.fail(said + report(run.findings), pytrace=False)
