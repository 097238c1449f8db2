"""The Kubernetes manifests in compose/k8s, checked offline (no cluster needed); KEDA's in test_keda.py.

Every core object validates strictly against the Kubernetes schemas of one pinned version
(kubernetes-validate), and `kubectl kustomize` builds the same objects. Then what a schema cannot
see: every service of the roster (pm_shared.fleet) is a Deployment, and nothing else is, running its
console script from the image of its own workspace member; every `PM_*` variable a pod gets is
accepted by that service's settings loader; every Deployment probes the port its settings bind,
outlives the stream lease on SIGTERM, runs unprivileged and has a PDB; the migration Job runs before
the Deployments. The front door (nginx) and PgBouncer, not PM processes, are the two other
Deployments: they run unprivileged and have a PDB too; test_k8s_front_door.py and
test_pgbouncer_wiring.py check the rest of them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

import kubernetes_validate  # type: ignore[import-untyped]
import msgspec
import pytest
import yaml

from pm_shared import fleet
from pm_shared.settings import CommonSettings, SettingsError, load_settings
from pm_shared.streams import names

if TYPE_CHECKING:
    from tests.deploy.conftest import Manifests, Obj, Workspace

K8S = Path(__file__).resolve().parents[2] / "compose" / "k8s"
KUBERNETES_VERSION = "1.31"
NAMESPACE = "pm"

SERVICES = {m.name: m for m in fleet.SERVICES}
"""Each service of the roster is a Deployment of its name."""
DEPLOYMENTS = sorted(SERVICES)
(SINGLE_WRITER,) = [m.name for m in fleet.SERVICES if m.single_active]
"""Not autoscaled by design: one active writer (a Redis lease) and one standby."""
TOOLS_IMAGE = "pm-tools"
"""The image of the migration Job (the `pm` CLI)."""
FRONT_DOOR = "front-door"
"""The front door's Deployment: nginx (test_k8s_front_door.py), the one Deployment not of the roster."""
FRONT_DOOR_IMAGE = "nginx"
PGBOUNCER = "pgbouncer"
"""PgBouncer's Deployment (pgbouncer.yaml; test_pgbouncer_wiring.py checks the wiring)."""
PGBOUNCER_IMAGE = "pm-pgbouncer"
ALL_DEPLOYMENTS = sorted([*DEPLOYMENTS, FRONT_DOOR, PGBOUNCER])


# ------------------------------------------------------------------------------- the files and kustomize


def test_kustomization_lists_every_manifest(manifests: Manifests) -> None:
    resources = manifests.kustomization["resources"]
    assert len(resources) == len(set(resources)), "a file listed twice"
    on_disk = {p.name for p in K8S.glob("*.yaml")} | {p.name for p in K8S.glob("*.yml")}
    assert set(resources) == on_disk - {"kustomization.yaml"}
    assert manifests.kustomization["namespace"] == NAMESPACE


def test_every_object_is_in_the_namespace(manifests: Manifests) -> None:
    for obj in manifests.objects:
        if obj["kind"] == "Namespace":
            assert obj["metadata"]["name"] == NAMESPACE
        else:
            assert obj["metadata"].get("namespace") == NAMESPACE, manifests.id(obj)
    assert len({(o["kind"], o["metadata"]["name"]) for o in manifests.objects}) == len(manifests.objects), (
        "duplicates"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")
def test_kustomize_builds_the_same_objects(manifests: Manifests, workspace: Workspace) -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], check=True, capture_output=True, text=True, timeout=60
    ).stdout
    objs = [d for d in yaml.safe_load_all(built) if d]
    for obj in objs:  # a generated ConfigMap's name ends with a hash of its content
        unhashed = manifests.GENERATED_HASH.sub("", obj["metadata"]["name"])
        if obj["kind"] == "ConfigMap" and unhashed in manifests.generated_names():
            assert obj["data"] == manifests.one("ConfigMap", unhashed)["data"]
            obj["metadata"]["name"] = unhashed
    assert sorted(manifests.id(o) for o in objs) == sorted(manifests.id(o) for o in manifests.objects)
    images = {
        c["image"]
        for o in objs
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"].get("initContainers", [])
        + o["spec"]["template"]["spec"]["containers"]
    }
    expected = {workspace.member(m.module).distribution for m in fleet.SERVICES} | {
        TOOLS_IMAGE,
        FRONT_DOOR_IMAGE,
        PGBOUNCER_IMAGE,
    }
    assert {i.rsplit(":", 1)[0] for i in images} == expected, (
        "one image per service, pm-tools for the Job, nginx for the front door, pm-pgbouncer"
    )


# ------------------------------------------------------------------------------- Kubernetes core schemas


def test_core_objects_validate_strictly(core_object: Obj, manifests: Manifests) -> None:
    """Each object but KEDA's (conftest.py parametrizes `core_object`)."""
    try:
        kubernetes_validate.validate(core_object, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{manifests.id(core_object)}: {path}: {exc.message}")


# --------------------------------------------------------------------------------------- the Deployments


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_service_settings_accept_the_pod_environment(name: str, manifests: Manifests) -> None:
    env = manifests.service_env(name)
    try:
        settings = manifests.LOADERS[name](env)
    except SettingsError as exc:
        pytest.fail(f"{name} would not start: {exc}")
    assert settings.host == "0.0.0.0", f"{name} must bind every interface in a pod"
    assert settings.consumer_name == manifests.POD_NAME, (
        "PM_CONSUMER_NAME must be the pod name (downward API)"
    )
    assert not [k for k in env if k.startswith("PM_") and not k.isupper()], "lower-case PM_ variable"


def test_every_service_of_the_roster_is_a_deployment_and_nothing_else(manifests: Manifests) -> None:
    assert sorted(d["metadata"]["name"] for d in manifests.all("Deployment")) == ALL_DEPLOYMENTS
    groups = {g for s in names.ALL_STREAMS for g in s.groups}
    consumers = {m.group for m in fleet.SERVICES if m.group is not None}
    assert groups == consumers, "every consumer group is a service of the roster, named after it"


def test_the_gateway_refuses_to_start_with_the_placeholder_key(manifests: Manifests) -> None:
    env = manifests.container_env(manifests.container(manifests.one("Deployment", fleet.GATEWAY.name)))
    with pytest.raises(SettingsError, match="PM_KEY_ENCRYPTION_KEY"):
        manifests.LOADERS[fleet.GATEWAY.name](env)


def test_the_gateway_refuses_to_start_with_the_placeholder_proxy_secret(manifests: Manifests) -> None:
    # Whoever knows the proxy secret speaks for any user: the committed placeholder must not serve.
    env = manifests.container_env(manifests.container(manifests.one("Deployment", fleet.GATEWAY.name)))
    env["PM_KEY_ENCRYPTION_KEY"] = manifests.VALID_KEY
    with pytest.raises(SettingsError, match="PM_GATEWAY_PROXY_SECRET"):
        manifests.LOADERS[fleet.GATEWAY.name](env)


def test_secrets_reach_only_the_services_that_need_them(manifests: Manifests) -> None:
    for deployment in manifests.all("Deployment"):
        container = manifests.container(deployment)
        for source in container.get("envFrom", []):
            assert source.get("secretRef", {}).get("name") != "pm-secrets", (
                f"{manifests.id(deployment)} takes every secret; use secretKeyRef for its own"
            )


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_command_is_the_services_console_script_in_its_own_image(
    name: str, manifests: Manifests, workspace: Workspace
) -> None:
    member = SERVICES[name]
    assert member.script is not None, f"{name} has no console script"
    project = workspace.member(member.module)
    container = manifests.container(manifests.one("Deployment", name))
    assert container["command"] == [member.script], f"{name} runs {container['command']}"
    assert project.scripts[member.script] == f"{member.module}.main:run"
    # Its image installs its member alone (the Dockerfile's PACKAGE): no other service, no tooling.
    assert manifests.image_name(container) == project.distribution, f"{name} runs from {container['image']}"


def test_the_migration_job_runs_the_tools_image_and_every_image_is_set_in_one_place(
    manifests: Manifests, workspace: Workspace
) -> None:
    pod = manifests.one("Job", "pm-migrate")["spec"]["template"]["spec"]
    for container in pod["initContainers"] + pod["containers"]:
        assert manifests.image_name(container) == TOOLS_IMAGE, container["name"]
        assert container["command"][0] in workspace.member("pm_tools").scripts
    used = {
        manifests.image_name(c)
        for o in manifests.objects
        if o["kind"] in ("Deployment", "Job")
        for c in o["spec"]["template"]["spec"].get("initContainers", [])
        + o["spec"]["template"]["spec"]["containers"]
    }
    assert {image["name"] for image in manifests.kustomization["images"]} == used


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_probes_and_metrics_use_the_port_the_settings_bind(name: str, manifests: Manifests) -> None:
    settings = manifests.settings(name)
    deployment = manifests.one("Deployment", name)
    container = manifests.container(deployment)
    assert [p["containerPort"] for p in container["ports"]] == [settings.port]
    readiness = container["readinessProbe"]["httpGet"]
    # The ledger-writer's /readyz is true only on the active writer: see ledger-writer.yaml.
    assert readiness["path"] == ("/healthz" if name == SINGLE_WRITER else "/readyz")
    assert manifests.port(container, readiness["port"]) == settings.port
    liveness = container["livenessProbe"]["httpGet"]
    assert liveness["path"] == "/healthz" and manifests.port(container, liveness["port"]) == settings.port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(settings.port)
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", DEPLOYMENTS)
def test_termination_grace_outlives_the_lease_and_the_shutdown_grace(name: str, manifests: Manifests) -> None:
    settings = manifests.settings(name)
    pod = manifests.one("Deployment", name)["spec"]["template"]["spec"]
    grace = pod["terminationGracePeriodSeconds"]
    pre_stop = manifests.container(manifests.one("Deployment", name)).get("lifecycle", {}).get("preStop", {})
    before_sigterm = pre_stop.get("sleep", {}).get("seconds", 0)
    assert grace > settings.stream_lease_ms / 1000, f"grace {grace}s ≤ stream lease"
    assert grace > before_sigterm + settings.shutdown_grace_s, f"grace {grace}s ≤ preStop + shutdown grace"
    if SERVICES[name].single_active:  # the writer's lease passes to the standby only once it expires
        assert grace > msgspec.structs.asdict(settings)["lease_ms"] / 1000


@pytest.mark.parametrize("name", ALL_DEPLOYMENTS)
def test_pods_run_unprivileged_with_limits(name: str, manifests: Manifests) -> None:
    deployment = manifests.one("Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod.get("automountServiceAccountToken") is False
    # Service links would inject `<SERVICE>_PORT`-style variables: a Service named `pm` would give
    # every pod PM_PORT, PM_SERVICE_HOST…, unknown PM_* variables that stop the services at start.
    assert pod.get("enableServiceLinks") is False
    container = manifests.container(deployment)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    resources = container["resources"]
    for key in ("cpu", "memory"):
        assert key in resources["requests"], f"{name}: no {key} request"
    assert "memory" in resources["limits"], f"{name}: no memory limit"


@pytest.mark.parametrize("name", ALL_DEPLOYMENTS)
def test_every_deployment_has_exactly_one_pdb(name: str, manifests: Manifests) -> None:
    deployment = manifests.one("Deployment", name)
    assert manifests.selects(deployment["spec"]["selector"], manifests.pod_labels(deployment))
    budgets = [
        p
        for p in manifests.all("PodDisruptionBudget")
        if manifests.selects(p["spec"]["selector"], manifests.pod_labels(deployment))
    ]
    assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets select its pods"
    others = [d for d in manifests.all("Deployment") if d is not deployment]
    assert not [
        d for d in others if manifests.selects(budgets[0]["spec"]["selector"], manifests.pod_labels(d))
    ]


def test_ledger_writer_is_one_active_and_one_standby(manifests: Manifests) -> None:
    writer = manifests.one("Deployment", SINGLE_WRITER)
    assert writer["spec"]["replicas"] == 2
    strategy = writer["spec"]["strategy"]
    assert strategy["type"] == "RollingUpdate"
    # Never a third writer pod, never two new ones at once: replace one, then the other.
    assert strategy["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
    budget = manifests.one("PodDisruptionBudget", SINGLE_WRITER)
    assert budget["spec"].get("minAvailable") == 1
    assert not [
        s for s in manifests.all("ScaledObject") if s["spec"]["scaleTargetRef"]["name"] == SINGLE_WRITER
    ]


def test_gateway_service_reaches_the_gateway_port(manifests: Manifests) -> None:
    service = manifests.one("Service", "gateway")
    deployment = manifests.one("Deployment", "gateway")
    assert manifests.selects({"matchLabels": service["spec"]["selector"]}, manifests.pod_labels(deployment))
    (port,) = service["spec"]["ports"]
    assert port["port"] == manifests.settings("gateway").port
    assert (
        manifests.port(manifests.container(deployment), port["targetPort"])
        == manifests.settings("gateway").port
    )


def test_migration_job_runs_migrate_then_provision_before_the_deployments(manifests: Manifests) -> None:
    job = manifests.one("Job", "pm-migrate")
    pod = job["spec"]["template"]["spec"]
    steps = [c["command"] for c in pod["initContainers"] + pod["containers"]]
    assert steps == [["pm", "migrate"], ["pm", "streams", "--provision"]]
    for container in pod["initContainers"] + pod["containers"]:
        try:
            load_settings(CommonSettings, "", manifests.container_env(container))  # what `pm` loads
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
        obj = manifests.one(kind, name)
        assert obj["metadata"]["labels"].get("pm-stage") == "pre-deploy", f"{kind}/{name} not pre-deploy"
        if kind != "Job":
            assert _wave(obj) < job_wave, f"{kind}/{name} must sync before the Job"
    for deployment in manifests.all("Deployment"):
        wave = _wave(deployment)
        assert wave > job_wave, f"{manifests.id(deployment)} must sync after the Job"
        container = manifests.container(deployment)
        sources = container.get("envFrom", [])
        refs = [("ConfigMap", s["configMapRef"]["name"]) for s in sources if "configMapRef" in s]
        refs += [("Secret", s["secretRef"]["name"]) for s in sources if "secretRef" in s]
        for kind, ref in (("Secret", "secretKeyRef"), ("ConfigMap", "configMapKeyRef")):
            refs += [
                (kind, v["valueFrom"][ref]["name"])
                for v in container.get("env", [])
                if ref in v.get("valueFrom", {})
            ]
        volumes = deployment["spec"]["template"]["spec"].get("volumes", [])
        refs += [("ConfigMap", v["configMap"]["name"]) for v in volumes if "configMap" in v]
        refs += [("Secret", v["secret"]["secretName"]) for v in volumes if "secret" in v]
        for kind, name in refs:
            assert _wave(manifests.one(kind, name)) < wave, (
                f"{kind}/{name} must sync before {manifests.id(deployment)}"
            )


def _wave(obj: Obj) -> int:
    return int(obj["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))


def test_settings_structs_still_forbid_unknown_fields(manifests: Manifests) -> None:
    # The env checks above rely on it: a Struct that ignored unknown fields would accept any typo.
    for load in manifests.LOADERS.values():
        with pytest.raises((SettingsError, msgspec.ValidationError)):
            load({"PM_NO_SUCH_SETTING": "1"})
