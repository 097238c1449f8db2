"""Properties of the one decoding path (`pm_gateway.inputs`, `pm_gateway.cursors`): whatever bytes or
JSON arrive, each decoder answers with a value PostgreSQL can hold or a 4xx problem, never anything
else (the exception a 500 would come from)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.requests import Request

from pm_gateway import cursors, inputs
from pm_gateway.endpoints import Endpoint, Param
from pm_gateway.problems import ProblemError
from pm_gateway.routes import ENDPOINTS

WITH_BODY = [e for e in ENDPOINTS if e.body is not None]
PARAMS = sorted({p.name: p for e in ENDPOINTS for p in e.params}.values(), key=lambda p: p.name)
POSTGRES_EARLIEST = datetime(1, 1, 1, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(max_size=30),
    st.sampled_from(["\x00", "a\x00b", "P2P", "THB", "user", "alice", "9999-12-31T23:59:59-14:00"]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=6)
    ),
    max_leaves=20,
)


def storable(value: Any) -> None:
    """Every string in `value` is one PostgreSQL can hold (no NUL) and UTF-8 can encode."""
    if isinstance(value, str):
        assert "\x00" not in value, value
        value.encode("utf-8")
    elif isinstance(value, dict):
        for key, item in value.items():
            storable(key)
            storable(item)
    elif isinstance(value, list):
        for item in value:
            storable(item)


def _decoded_or_4xx(endpoint: Endpoint, raw: bytes) -> None:
    assert endpoint.body is not None
    try:
        value = inputs.decode_json(raw, msgspec.json.Decoder(endpoint.body))
    except ProblemError as exc:
        assert exc.status in {400, 422} and exc.code in endpoint.all_problems()[exc.status]
        return
    storable(msgspec.to_builtins(value))


@pytest.mark.parametrize("endpoint", WITH_BODY, ids=lambda e: f"{e.method} {e.path}")
@settings(max_examples=150, deadline=None, database=None)
@given(raw=st.one_of(st.binary(max_size=200), json_values.map(msgspec.json.encode)))
def test_any_body_decodes_to_a_storable_value_or_a_declared_4xx(endpoint: Endpoint, raw: bytes) -> None:
    _decoded_or_4xx(endpoint, raw)


def _request(param: Param, raw: bytes) -> Request:
    scope: dict[str, Any] = {"type": "http", "path_params": {}, "query_string": b"", "headers": []}
    if param.where == "path":
        scope["path_params"] = {param.name: raw.decode("utf-8", "replace")}
    elif param.where == "query":
        scope["query_string"] = param.name.encode() + b"=" + raw.replace(b"&", b"%26").replace(b"#", b"%23")
    else:
        scope["headers"] = [(param.name.lower().encode(), raw)]
    return Request(scope)


@pytest.mark.parametrize("param", PARAMS, ids=lambda p: p.name)
@settings(max_examples=200, deadline=None, database=None)
@given(raw=st.one_of(st.binary(max_size=80), st.text(max_size=80).map(str.encode)))
def test_any_parameter_converts_or_is_its_declared_problem(param: Param, raw: bytes) -> None:
    try:
        value = inputs.read_param(_request(param, raw), param)
    except ProblemError as exc:
        assert (exc.status, exc.code) in {
            (param.status, param.code),
            (param.missing_status, param.missing_code),
        }
        return
    if isinstance(value, str):
        storable(value)
    elif isinstance(value, int):
        assert 0 <= value < 2**63


@settings(max_examples=300, deadline=None, database=None)
@given(
    text=st.one_of(
        st.text(max_size=80),
        st.builds(
            lambda at, ident: cursors.encode(at, ident),
            st.datetimes(timezones=st.timezones() | st.none()),
            st.one_of(st.integers(min_value=-(2**80), max_value=2**80), st.uuids(), st.text(max_size=10)),
        ),
    )
)
def test_any_cursor_is_a_time_postgresql_holds_or_cursor_invalid(text: str) -> None:
    try:
        at, ident = cursors.decode(text)
    except ProblemError as exc:
        assert (exc.status, exc.code) == (400, "cursor_invalid")
        return
    assert at.tzinfo is UTC and at >= POSTGRES_EARLIEST
    storable(ident)
    try:
        _, number = cursors.decode_bigint(text)
    except ProblemError:
        return
    assert 0 <= number <= cursors.BIGINT_MAX


@settings(max_examples=300, deadline=None, database=None)
@given(header=st.one_of(st.none(), st.text(max_size=60)))
def test_any_content_type_is_json_or_415(header: str | None) -> None:
    try:
        inputs.media_type(header)
    except ProblemError as exc:
        assert (exc.status, exc.code) == (415, "unsupported_media_type")
        return
    assert header is not None and header.split(";")[0].strip().lower() == "application/json"


def test_the_known_bad_values_are_refused() -> None:
    # The examples of the issue that found them, so they stay covered whatever hypothesis draws.
    with pytest.raises(ProblemError, match="cursor_invalid"):
        cursors.decode(cursors.encode(datetime.fromisoformat("0001-01-01T00:00:00+14:00"), 1))
    with pytest.raises(ProblemError, match="cursor_invalid"):
        cursors.decode_bigint(cursors.encode(datetime.now(UTC), 2**70))
    limit = next(p for p in PARAMS if p.name == "limit")
    for raw in ("²".encode(), "٣".encode(), b"0", b"201", b"+1", b" 1"):
        with pytest.raises(ProblemError, match="limit_invalid"):
            inputs.read_param(_request(limit, raw), limit)
    assert inputs.read_param(_request(limit, b"200"), limit) == 200
    owner = next(p for p in PARAMS if p.name == "owner_id")
    for raw in (b"alice\n", b"..", b"a\x00b", b"a" * 65):
        with pytest.raises(ProblemError, match="invalid_parameter"):
            inputs.read_param(_request(owner, raw), owner)
    assert inputs.read_param(_request(owner, b"u-1001"), owner) == "u-1001"
    # A callback's unknown fields are skipped, recursively: the depth is what is refused.
    callback = next(e.body for e in WITH_BODY if e.path == "/v1/webhooks/ipps")
    assert callback is not None
    deep = b'{"x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(ProblemError, match="malformed_json"):
        inputs.decode_json(deep, msgspec.json.Decoder(callback))
