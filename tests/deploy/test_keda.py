"""The KEDA objects in compose/k8s: valid, and autoscaling every consumer group on what the code has.

The KEDA objects validate against the vendored KEDA CRD schemas (compose/k8s/schemas), made strict as
`kubectl apply` is. Every consumer group is autoscaled on the streams it reads (`streams_read_by`),
on its lag and on the outstanding-entries metric the code exports, except the single-active writer;
the Redis triggers reach the Redis of PM_REDIS_URL, with its password.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from pm_shared import fleet
from pm_shared.streams import metrics as stream_metrics
from pm_shared.streams import names

if TYPE_CHECKING:
    from tests.deploy.conftest import Manifests, Obj

K8S = Path(__file__).resolve().parents[2] / "compose" / "k8s"
KEDA_SCHEMAS = {
    "ScaledObject": K8S / "schemas" / "keda.sh_scaledobjects.v1alpha1.yaml",
    "TriggerAuthentication": K8S / "schemas" / "keda.sh_triggerauthentications.v1alpha1.yaml",
}
CONSUMER_GROUPS = sorted(
    (stream.name, m.group)
    for m in fleet.SERVICES
    if m.group is not None and not m.single_active
    for stream in names.streams_read_by(m.group)
)
"""Each (stream, group) that must be autoscaled: not the single-active writer's."""


# -------------------------------------------------------------------------------------- the KEDA schemas


def _strict(schema: Any) -> Any:
    """Reject unknown fields, as server-side field validation (kubectl's default) does."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def _keda_validator(kind: str) -> jsonschema.Draft7Validator:
    schema = _strict(yaml.safe_load(KEDA_SCHEMAS[kind].read_text()))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def test_keda_objects_validate_strictly(keda_object: Obj) -> None:
    """Each KEDA object (conftest.py parametrizes `keda_object`)."""
    assert keda_object["apiVersion"] == "keda.sh/v1alpha1"
    assert keda_object["kind"] in KEDA_SCHEMAS, f"no vendored schema for {keda_object['kind']}"
    errors = sorted(_keda_validator(keda_object["kind"]).iter_errors(keda_object), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


# --------------------------------------------------------------------------- what the schemas cannot see


def _triggers(manifests: Manifests, kind: str) -> Iterator[tuple[Obj, Obj]]:
    for scaled in manifests.all("ScaledObject"):
        for trigger in scaled["spec"]["triggers"]:
            if trigger["type"] == kind:
                yield scaled, trigger


def _exported_metrics() -> set[str]:
    exported: set[str] = set()
    for value in vars(stream_metrics).values():
        if isinstance(value, MetricWrapperBase):
            exported.update(family.name for family in value.describe())
    assert "pm_stream_group_outstanding" in exported
    return exported


_MATCHER = re.compile(r'(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


def _promql_matchers(query: str) -> dict[str, tuple[str, str]]:
    """label -> (operator, value) of the query's label matchers (PromQL string escapes undone)."""
    found: dict[str, tuple[str, str]] = {}
    for label, op, raw in _MATCHER.findall(query):
        assert label not in found, f"label {label} matched twice in {query}"
        found[label] = (op, re.sub(r"\\(.)", r"\1", raw))
    return found


def _keys_of(stream: str, partitions: int) -> list[str]:
    return [names.stream_key(stream, p) for p in range(partitions)]


def _all_keys(partitions: int) -> list[str]:
    return [k for s in names.ALL_STREAMS for k in _keys_of(s.name, partitions)]


def _scaled_object(manifests: Manifests, group: str) -> Obj:
    matches = [s for s in manifests.all("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == group]
    assert len(matches) == 1, f"group {group}: {len(matches)} ScaledObjects target Deployment {group}"
    return matches[0]


@pytest.mark.parametrize(("stream", "group"), CONSUMER_GROUPS, ids=[f"{s}:{g}" for s, g in CONSUMER_GROUPS])
def test_every_consumer_group_is_autoscaled_on_lag_and_outstanding(
    stream: str, group: str, manifests: Manifests
) -> None:
    partitions = manifests.common().stream_partitions
    scaled = _scaled_object(manifests, group)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] >= 1, "minReplicaCount < 1: the consumers export the metric"
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    assert spec["cooldownPeriod"] > 0
    lag = [
        t["metadata"]
        for s, t in _triggers(manifests, "redis-streams")
        if s is scaled and t["metadata"]["consumerGroup"] == group
    ]
    for key in _keys_of(stream, partitions):
        on_key = [m for m in lag if m["stream"] == key]
        assert len(on_key) == 1, f"{group}: {len(on_key)} redis-streams triggers on {key}"
        assert int(on_key[0]["lagCount"]) > 0
        assert not {"pendingEntriesCount", "streamLength"} & set(on_key[0]), "lag mode only"
    outstanding = []
    for s, t in _triggers(manifests, "prometheus"):
        matchers = _promql_matchers(t["metadata"]["query"])
        if s is scaled and "stream" in matchers:
            op, pattern = matchers["stream"]
            if op == "=~" and all(re.fullmatch(pattern, k) for k in _keys_of(stream, partitions)):
                outstanding.append(t)
    assert len(outstanding) == 1, f"{group}: {len(outstanding)} prometheus triggers cover {stream}"
    metadata = outstanding[0]["metadata"]
    assert "pm_stream_group_outstanding" in metadata["query"]
    assert _promql_matchers(metadata["query"])["group"] == ("=", group)
    assert float(metadata["threshold"]) > 0


def test_redis_triggers_name_real_streams_and_the_configured_redis(manifests: Manifests) -> None:
    common = manifests.common()
    url = urlsplit(common.redis_url)
    pairs = {
        (k, g)
        for s in names.ALL_STREAMS
        for g in s.groups
        for k in _keys_of(s.name, common.stream_partitions)
    }
    connection = manifests.secret_data(manifests.one("Secret", "pm-connection"))
    for scaled, trigger in _triggers(manifests, "redis-streams"):
        meta = trigger["metadata"]
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert meta["consumerGroup"] == target, "a Deployment consumes as the group named after it"
        assert (meta["stream"], meta["consumerGroup"]) in pairs, (
            f"no group {meta['consumerGroup']} on {meta['stream']}"
        )
        assert meta["address"] == f"{url.hostname}:{url.port or 6379}", "not the Redis of PM_REDIS_URL"
        assert meta.get("databaseIndex", "0") == (url.path.strip("/") or "0")
        auth = manifests.one("TriggerAuthentication", trigger["authenticationRef"]["name"])
        (ref,) = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "password"]
        password = manifests.secret_data(manifests.one("Secret", ref["name"]))[ref["key"]]
        assert password == (url.password or ""), "KEDA's Redis password differs from PM_REDIS_URL's"
        assert common.redis_url == connection["PM_REDIS_URL"]


def test_prometheus_triggers_query_metrics_the_code_exports(manifests: Manifests) -> None:
    exported = _exported_metrics()
    partitions = manifests.common().stream_partitions
    triggers = list(_triggers(manifests, "prometheus"))
    assert triggers
    for scaled, trigger in triggers:
        query = trigger["metadata"]["query"]
        used = set(re.findall(r"\b(pm_[a-z0-9_]+)\s*\{", query))
        assert used and used <= exported, f"{query}: {sorted(used - exported)} not exported"
        assert urlsplit(trigger["metadata"]["serverAddress"]).scheme in ("http", "https")
        matchers = _promql_matchers(query)
        group = scaled["spec"]["scaleTargetRef"]["name"]
        assert matchers["group"] == ("=", group)
        op, pattern = matchers["stream"]
        selected = [k for k in _all_keys(partitions) if re.fullmatch(pattern, k)]
        read = {k for s in names.streams_read_by(group) for k in _keys_of(s.name, partitions)}
        assert selected and set(selected) <= read, f"{query} selects {selected}, {group} reads {sorted(read)}"


def test_autoscaled_deployments_leave_replicas_to_keda(manifests: Manifests) -> None:
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in manifests.all("ScaledObject")]
    assert len(targets) == len(set(targets)), "KEDA allows one ScaledObject per Deployment"
    for name in targets:
        deployment = manifests.one("Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: a re-apply would reset KEDA's replica count"
