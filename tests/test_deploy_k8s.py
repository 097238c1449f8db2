"""Offline checks of the Kubernetes manifests in compose/k8s (no cluster needed).

(a) every core object validates strictly against the Kubernetes schemas of one pinned version
    (kubernetes-validate); (b) the KEDA objects validate against the vendored KEDA CRD schemas
    (compose/k8s/schemas), made strict as `kubectl apply` is; (c) what a schema cannot see: every
    service of the roster (pm_shared.fleet) is a Deployment, and nothing else is, running its console
    script from the image of its own workspace member; every consumer group is autoscaled on the
    streams (`streams_read_by`), groups and metrics the code really has, except the single-active
    writer; every Deployment probes the port its settings bind, outlives the stream lease on SIGTERM
    and has a PDB, and every `PM_*` variable a pod gets is accepted by that service's settings loader.
"""

from __future__ import annotations

import base64
import functools
import importlib
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import msgspec
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from pm_shared import fleet
from pm_shared.settings import CommonSettings, ServiceSettings, SettingsError, load_settings
from pm_shared.streams import metrics as stream_metrics
from pm_shared.streams import names

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "compose" / "k8s"
KUBERNETES_VERSION = "1.31"
NAMESPACE = "pm"
KEDA_SCHEMAS = {
    "ScaledObject": K8S / "schemas" / "keda.sh_scaledobjects.v1alpha1.yaml",
    "TriggerAuthentication": K8S / "schemas" / "keda.sh_triggerauthentications.v1alpha1.yaml",
}

Obj = dict[str, Any]

SERVICES = {m.name: m for m in fleet.SERVICES}
"""Each service of the roster is a Deployment of its name."""
LOADERS: dict[str, Callable[[Mapping[str, str]], ServiceSettings]] = {
    m.name: importlib.import_module(f"{m.module}.settings").load for m in fleet.SERVICES
}
(SINGLE_WRITER,) = [m.name for m in fleet.SERVICES if m.single_active]
"""Not autoscaled by design: one active writer (a Redis lease) and one standby."""
TOOLS_IMAGE = "pm-tools"
"""The image of the migration Job (the `pm` CLI)."""
POD_NAME = "pod-name-from-the-downward-api"


# ---------------------------------------------------------------------------------------------- loading


def _kustomization() -> Obj:
    data = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(data, dict)
    return data


@functools.cache
def _objects() -> tuple[Obj, ...]:
    found: list[Obj] = []
    for resource in _kustomization()["resources"]:
        for doc in yaml.safe_load_all((K8S / resource).read_text()):
            if doc:
                found.append(doc)
    return tuple(found)


def _all(kind: str) -> list[Obj]:
    return [o for o in _objects() if o["kind"] == kind]


def _one(kind: str, name: str) -> Obj:
    matches = [o for o in _all(kind) if o["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def _id(obj: Obj) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, f"{_id(deployment)}: one container per pod expected"
    container: Obj = containers[0]
    return container


def _secret_data(secret: Obj) -> dict[str, str]:
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    data.update(secret.get("stringData") or {})
    return data


def _container_env(container: Obj) -> dict[str, str]:
    """The environment a container starts with (envFrom in order, then env, which wins)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        elif "secretRef" in source:
            env.update(_secret_data(_one("Secret", source["secretRef"]["name"])))
        else:
            raise AssertionError(f"unexpected envFrom source {source}")
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
            continue
        ref = var["valueFrom"]
        if "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name", var
            env[var["name"]] = POD_NAME
        elif "secretKeyRef" in ref:
            data = _secret_data(_one("Secret", ref["secretKeyRef"]["name"]))
            assert ref["secretKeyRef"]["key"] in data, f"{var['name']}: no such key in its Secret"
            env[var["name"]] = data[ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            data = _one("ConfigMap", ref["configMapKeyRef"]["name"])["data"]
            env[var["name"]] = data[ref["configMapKeyRef"]["key"]]
        else:
            raise AssertionError(f"unexpected valueFrom {ref}")
    return env


VALID_KEY = base64.b64encode(bytes(range(32))).decode()
"""Stands in for the operator's PM_KEY_ENCRYPTION_KEY: the committed Secret holds a placeholder."""


def _service_env(name: str) -> dict[str, str]:
    env = _container_env(_container(_one("Deployment", name)))
    if "PM_KEY_ENCRYPTION_KEY" in env:
        env["PM_KEY_ENCRYPTION_KEY"] = VALID_KEY
    return env


def _settings(name: str) -> ServiceSettings:
    return LOADERS[name](_service_env(name))


def _common() -> CommonSettings:
    """The fleet's common settings as the pods get them (from the migration Job's environment)."""
    job = _one("Job", "pm-migrate")
    return load_settings(CommonSettings, "", _container_env(job["spec"]["template"]["spec"]["containers"][0]))


def _port(container: Obj, port: int | str) -> int:
    """A probe's port, resolving a named container port."""
    if isinstance(port, int):
        return port
    by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    assert port in by_name, f"no container port named {port!r}"
    return int(by_name[port])


def _selects(selector: Obj, labels: Mapping[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def _pod_labels(deployment: Obj) -> dict[str, str]:
    labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
    return labels


@functools.cache
def _workspace_projects() -> dict[str, dict[str, Any]]:
    """Every workspace member's pyproject, by its import package (`pm_gateway`)."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    projects: dict[str, dict[str, Any]] = {}
    for pattern in patterns:
        for path in sorted(ROOT.glob(f"{pattern}/pyproject.toml")):
            project = tomllib.loads(path.read_text())
            (package,) = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
            projects[Path(package).name] = project
    return projects


def _workspace_project(module: str) -> dict[str, Any]:
    return _workspace_projects()[module]


def _image_name(container: Obj) -> str:
    """The image without registry tag or digest: `pm-gateway`."""
    return str(container["image"]).split("@")[0].rsplit(":", 1)[0]


DEPLOYMENTS = sorted(SERVICES)
CONSUMER_GROUPS = sorted(
    (stream.name, m.group)
    for m in fleet.SERVICES
    if m.group is not None and not m.single_active
    for stream in names.streams_read_by(m.group)
)


# ------------------------------------------------------------------------------ the files and kustomize


def test_kustomization_lists_every_manifest() -> None:
    resources = _kustomization()["resources"]
    assert len(resources) == len(set(resources)), "a file listed twice"
    on_disk = {p.name for p in K8S.glob("*.yaml")} | {p.name for p in K8S.glob("*.yml")}
    assert set(resources) == on_disk - {"kustomization.yaml"}
    assert _kustomization()["namespace"] == NAMESPACE


def test_every_object_is_in_the_namespace() -> None:
    for obj in _objects():
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, _id(obj)
    assert len({(o["kind"], o["metadata"]["name"]) for o in _objects()}) == len(_objects()), "duplicates"


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_same_objects() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    objs = [d for d in yaml.safe_load_all(built) if d]
    assert sorted(_id(o) for o in objs) == sorted(_id(o) for o in _objects())
    images = {
        c["image"]
        for o in objs
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"].get("initContainers", [])
        + o["spec"]["template"]["spec"]["containers"]
    }
    expected = {_workspace_project(m.module)["project"]["name"] for m in fleet.SERVICES} | {TOOLS_IMAGE}
    assert {i.rsplit(":", 1)[0] for i in images} == expected, "one image per service, pm-tools for the Job"


# ------------------------------------------------------------------------ (a) Kubernetes core schemas


@pytest.mark.parametrize(
    "obj", [o for o in _objects() if not o["apiVersion"].startswith("keda.sh/")], ids=_id
)
def test_core_objects_validate_strictly(obj: Obj) -> None:
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{_id(obj)}: {path}: {exc.message}")


# ---------------------------------------------------------------------------------- (b) KEDA schemas


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


@pytest.mark.parametrize("obj", [o for o in _objects() if o["apiVersion"].startswith("keda.sh/")], ids=_id)
def test_keda_objects_validate_strictly(obj: Obj) -> None:
    assert obj["apiVersion"] == "keda.sh/v1alpha1"
    assert obj["kind"] in KEDA_SCHEMAS, f"no vendored schema for {obj['kind']}"
    errors = sorted(_keda_validator(obj["kind"]).iter_errors(obj), key=lambda e: list(e.path))
    assert not errors, "; ".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


# ----------------------------------------------------------------------------- (c) the Deployments


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_service_settings_accept_the_pod_environment(name: str) -> None:
    env = _service_env(name)
    try:
        settings = LOADERS[name](env)
    except SettingsError as exc:
        pytest.fail(f"{name} would not start: {exc}")
    assert settings.host == "0.0.0.0", f"{name} must bind every interface in a pod"
    assert settings.consumer_name == POD_NAME, "PM_CONSUMER_NAME must be the pod name (downward API)"
    assert not [k for k in env if k.startswith("PM_") and not k.isupper()], "lower-case PM_ variable"


def test_every_service_of_the_roster_is_a_deployment_and_nothing_else() -> None:
    assert sorted(d["metadata"]["name"] for d in _all("Deployment")) == DEPLOYMENTS
    groups = {g for s in names.ALL_STREAMS for g in s.groups}
    consumers = {m.group for m in fleet.SERVICES if m.group is not None}
    assert groups == consumers, "every consumer group is a service of the roster, named after it"


def test_the_gateway_refuses_to_start_with_the_placeholder_key() -> None:
    env = _container_env(_container(_one("Deployment", fleet.GATEWAY.name)))
    with pytest.raises(SettingsError, match="PM_KEY_ENCRYPTION_KEY"):
        LOADERS[fleet.GATEWAY.name](env)


def test_secrets_reach_only_the_services_that_need_them() -> None:
    for deployment in _all("Deployment"):
        container = _container(deployment)
        for source in container.get("envFrom", []):
            assert source.get("secretRef", {}).get("name") != "pm-secrets", (
                f"{_id(deployment)} takes every secret; use secretKeyRef for its own"
            )


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_command_is_the_services_console_script_in_its_own_image(name: str) -> None:
    member = SERVICES[name]
    project = _workspace_project(member.module)["project"]
    container = _container(_one("Deployment", name))
    assert container["command"] == [member.script], f"{name} runs {container['command']}"
    assert project["scripts"][member.script] == f"{member.module}.main:run"
    # Its image installs its member alone (the Dockerfile's PACKAGE): no other service, no tooling.
    assert _image_name(container) == project["name"], f"{name} runs from {container['image']}"


def test_the_migration_job_runs_the_tools_image_and_every_image_is_set_in_one_place() -> None:
    pod = _one("Job", "pm-migrate")["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        assert _image_name(container) == TOOLS_IMAGE, container["name"]
        assert container["command"][0] in _workspace_project("pm_tools")["project"]["scripts"]
    used = {
        _image_name(c)
        for o in _objects()
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"].get("initContainers", [])
        + o["spec"]["template"]["spec"]["containers"]
    }
    assert {image["name"] for image in _kustomization()["images"]} == used


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_probes_and_metrics_use_the_port_the_settings_bind(name: str) -> None:
    settings = _settings(name)
    deployment = _one("Deployment", name)
    container = _container(deployment)
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]
    readiness = container["readinessProbe"]["httpGet"]
    # The ledger-writer's /readyz is true only on the active writer: see ledger-writer.yaml.
    assert readiness["path"] == ("/healthz" if name == SINGLE_WRITER else "/readyz")
    assert _port(container, readiness["port"]) == settings.port
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz" and _port(container, liveness["port"]) == settings.port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_termination_grace_outlives_the_lease_and_the_shutdown_grace(name: str) -> None:
    settings = _settings(name)
    pod = _one("Deployment", name)["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = _container(_one("Deployment", name)).get("lifecycle", {}).get("preStop", {})
    before_sigterm = pre_stop.get("sleep", {}).get("seconds", 0)
    assert grace > settings.stream_lease_ms / 1000, f"grace {grace}s ≤ stream lease"
    assert grace > before_sigterm + settings.shutdown_grace_s, f"grace {grace}s ≤ preStop + shutdown grace"
    if SERVICES[name].single_active:  # the writer's lease passes to the standby only once it expires
        assert grace > msgspec.structs.asdict(settings)["lease_ms"] / 1000


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_pods_run_unprivileged_with_limits(name: str) -> None:
    deployment = _one("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    # Service links would inject `<SERVICE>_PORT`-style variables: a Service named `pm` would give
    # every pod PM_PORT, PM_SERVICE_HOST…, unknown PM_* variables that stop the services at start.
    assert pod.get("enableServiceLinks") is False
    container = _container(deployment)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"], f"{name}: no {key} request"
    assert "memory" in resources["limits"], f"{name}: no memory limit"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_every_deployment_has_exactly_one_pdb(name: str) -> None:
    deployment = _one("Deployment", name)
    assert _selects(deployment["spec"]["selector"], _pod_labels(deployment))
    budgets = [
        p for p in _all("PodDisruptionBudget") if _selects(p["spec"]["selector"], _pod_labels(deployment))
    ]
    assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets select its pods"
    others = [d for d in _all("Deployment") if d is not deployment]
    assert not [d for d in others if _selects(budgets[0]["spec"]["selector"], _pod_labels(d))]


def test_ledger_writer_is_one_active_and_one_standby() -> None:
    writer = _one("Deployment", SINGLE_WRITER)
    assert writer["spec"]["replicas"] == 2
    strategy = writer["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    # Never a third writer pod, never two new ones at once: replace one, then the other.
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    budget = _one("PodDisruptionBudget", SINGLE_WRITER)
    assert budget["spec"].get("minAvailable") == 1
    assert not [s for s in _all("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == SINGLE_WRITER]


def test_gateway_service_reaches_the_gateway_port() -> None:
    service = _one("Service", "gateway")
    deployment = _one("Deployment", "gateway")
    assert _selects({"matchLabels": service["spec"]["selector"]}, _pod_labels(deployment))
    (port,) = service["spec"]["ports"]
    assert port["port"] == _settings("gateway").port
    assert _port(_container(deployment), port["targetPort"]) == _settings("gateway").port


def test_migration_job_runs_migrate_then_provision_before_the_deployments() -> None:
    job = _one("Job", "pm-migrate")
    pod = job["spec"]["template"]["spec"]
    steps = [c["command"] for c in pod["initContainers"] + pod["containers"]]
    assert steps == [["pm", "migrate"], ["pm", "streams", "--provision"]]
    for container in pod["initContainers"] + pod["containers"]:
        try:
            load_settings(CommonSettings, "", _container_env(container))  # what `pm` loads
        except SettingsError as exc:
            pytest.fail(f"`{' '.join(container['command'])}` would not start: {exc}")
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    annotations = job["metadata"]["annotations"]
    assert annotations["argocd.argoproj.io/hook"] == "Sync"
    job_wave = int(annotations["argocd.argoproj.io/sync-wave"])
    # `kubectl apply -k compose/k8s -l pm-stage=pre-deploy` must bring the Job and all it needs.
    needs = [("Namespace", NAMESPACE)] + [
        ("ConfigMap" if "configMapRef" in s else "Secret", (s.get("configMapRef") or s["secretRef"])["name"])
        for c in pod["initContainers"] + pod["containers"]
        for s in c.get("envFrom", [])
    ]
    for kind, name in [("Job", "pm-migrate"), *needs]:
        obj = _one(kind, name)
        assert obj["metadata"]["labels"].get("pm-stage") == "pre-deploy", f"{kind}/{name} not pre-deploy"
        if kind != "Job":
            assert _wave(obj) < job_wave, f"{kind}/{name} must sync before the Job"
    for deployment in _all("Deployment"):
        wave = _wave(deployment)
        assert wave > job_wave, f"{_id(deployment)} must sync after the Job"
        container = _container(deployment)
        refs = [("ConfigMap", s["configMapRef"]["name"]) for s in container["envFrom"] if "configMapRef" in s]
        refs += [("Secret", s["secretRef"]["name"]) for s in container["envFrom"] if "secretRef" in s]
        refs += [
            ("Secret", v["valueFrom"]["secretKeyRef"]["name"])
            for v in container["env"]
            if "secretKeyRef" in v.get("valueFrom", {})
        ]
        for kind, name in refs:
            assert _wave(_one(kind, name)) < wave, f"{kind}/{name} must sync before {_id(deployment)}"


def _wave(obj: Obj) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


# ------------------------------------------------------------------------------- (c) KEDA semantics


def _triggers(kind: str) -> Iterator[tuple[Obj, Obj]]:
    for scaled in _all("ScaledObject"):
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


def _scaled_object(group: str) -> Obj:
    matches = [s for s in _all("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == group]
    assert len(matches) == 1, f"group {group}: {len(matches)} ScaledObjects target Deployment {group}"
    return matches[0]


@pytest.mark.parametrize(("stream", "group"), CONSUMER_GROUPS, ids=[f"{s}:{g}" for s, g in CONSUMER_GROUPS])
def test_every_consumer_group_is_autoscaled_on_lag_and_outstanding(stream: str, group: str) -> None:
    partitions = _common().stream_partitions
    scaled = _scaled_object(group)
    spec = scaled["spec"]
    assert spec["scaleTargetRef"].get("kind", "Deployment") == "Deployment"
    assert spec["minReplicaCount"] >= 1, "minReplicaCount < 1: the consumers export the metric"
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    assert spec["cooldownPeriod"] > 0
    lag = [
        t["metadata"]
        for s, t in _triggers("redis-streams")
        if s is scaled and t["metadata"]["consumerGroup"] == group
    ]
    for key in _keys_of(stream, partitions):
        on_key = [m for m in lag if m["stream"] == key]
        assert len(on_key) == 1, f"{group}: {len(on_key)} redis-streams triggers on {key}"
        assert int(on_key[0]["lagCount"]) > 0
        assert not {"pendingEntriesCount", "streamLength"} & set(on_key[0]), "lag mode only"
    outstanding = []
    for s, t in _triggers("prometheus"):
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


def test_redis_triggers_name_real_streams_and_the_configured_redis() -> None:
    common = _common()
    url = urlsplit(common.redis_url)
    pairs = {
        (k, g)
        for s in names.ALL_STREAMS
        for g in s.groups
        for k in _keys_of(s.name, common.stream_partitions)
    }
    connection = _secret_data(_one("Secret", "pm-connection"))
    for scaled, trigger in _triggers("redis-streams"):
        meta = trigger["metadata"]
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert meta["consumerGroup"] == target, "a Deployment consumes as the group named after it"
        assert (meta["stream"], meta["consumerGroup"]) in pairs, (
            f"no group {meta['consumerGroup']} on {meta['stream']}"
        )
        assert meta["address"] == f"{url.hostname}:{url.port or 6379}", "not the Redis of PM_REDIS_URL"
        assert meta.get("databaseIndex", "0") == (url.path.strip("/") or "0")
        auth = _one("TriggerAuthentication", trigger["authenticationRef"]["name"])
        (ref,) = [r for r in auth["spec"]["secretTargetRef"] if r["parameter"] == "password"]
        password = _secret_data(_one("Secret", ref["name"]))[ref["key"]]
        assert password == (url.password or ""), "KEDA's Redis password differs from PM_REDIS_URL's"
        assert common.redis_url == connection["PM_REDIS_URL"]


def test_prometheus_triggers_query_metrics_the_code_exports() -> None:
    exported = _exported_metrics()
    partitions = _common().stream_partitions
    triggers = list(_triggers("prometheus"))
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


def test_autoscaled_deployments_leave_replicas_to_keda() -> None:
    targets = [s["spec"]["scaleTargetRef"]["name"] for s in _all("ScaledObject")]
    assert len(targets) == len(set(targets)), "KEDA allows one ScaledObject per Deployment"
    for name in targets:
        deployment = _one("Deployment", name)
        assert "replicas" not in deployment["spec"], f"{name}: a re-apply would reset KEDA's replica count"


def test_settings_structs_still_forbid_unknown_fields() -> None:
    # The env checks above rely on it: a Struct that ignored unknown fields would accept any typo.
    for load in LOADERS.values():
        with pytest.raises((SettingsError, msgspec.ValidationError)):
            load({"PM_NO_SUCH_SETTING": "1"})
