"""Readers of the deployment pack, shared by the deploy tests as fixtures.

Test modules cannot import each other (pytest runs with `--import-mode=importlib`), so what they share
is given by fixtures: `workspace` (the workspace members, what an image installs), `compose`
(compose/docker-compose.yml as docker compose reads it, and the PM process each service runs) and
`manifests` (the Kubernetes objects of compose/k8s). The test modules import the classes below for
their annotations only. The `core_object` and `keda_object` arguments are parametrized here, over
the objects of the kustomization, as the test ids must be known when the tests are collected.
No Docker engine nor cluster is needed (nor used).
"""

from __future__ import annotations

import base64
import functools
import importlib
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import msgspec
import pytest
import yaml

from pm_shared import fleet
from pm_shared.settings import CommonSettings, ServiceSettings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
K8S = ROOT / "compose" / "k8s"

Obj = dict[str, Any]
"""A Kubernetes object, or a part of one, as YAML gives it."""


# ---------------------------------------------------------------------------------------------------
# The workspace members (what an image installs)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkspaceMember:
    folder: str
    """`services/gateway`: relative to the repository."""
    distribution: str
    """`pm-gateway`: what an image installs (the Dockerfile's PACKAGE)."""
    module: str
    scripts: dict[str, str]
    """Its console scripts: `pm-gateway` → `pm_gateway.main:run`."""


@dataclass(frozen=True)
class Workspace:
    members: tuple[WorkspaceMember, ...]

    @classmethod
    def read(cls, root: Path) -> Workspace:
        """Every workspace member, from the root pyproject's member globs and the members' pyprojects."""
        patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
        found = []
        for pyproject in sorted(p for g in patterns for p in root.glob(f"{g}/pyproject.toml")):
            data = tomllib.loads(pyproject.read_text())
            (package,) = data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
            found.append(
                WorkspaceMember(
                    pyproject.parent.relative_to(root).as_posix(),
                    data["project"]["name"],
                    Path(package).name,
                    data["project"].get("scripts", {}),
                )
            )
        return cls(tuple(found))

    def member(self, module: str) -> WorkspaceMember:
        """The member whose import package is `module` (`pm_gateway`)."""
        (found,) = [m for m in self.members if m.module == module]
        return found


@pytest.fixture(scope="session")
def workspace() -> Workspace:
    return Workspace.read(ROOT)


# ---------------------------------------------------------------------------------------------------
# The compose file
# ---------------------------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)
_HEALTH_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[A-Za-z/_-]*)")


@dataclass(frozen=True)
class Process:
    """A PM process: a member of the roster (pm_shared.fleet), or the `pm` CLI (`member` None)."""

    member: fleet.Member | None
    settings_type: type[msgspec.Struct]
    prefix: str
    load: Callable[[Mapping[str, str]], msgspec.Struct]

    @property
    def has_metrics(self) -> bool:
        """The services (not the sandboxes, not the CLI) serve /metrics on their port."""
        return self.member is not None and self.member.metrics

    def unread_variables(self, env: Mapping[str, str]) -> list[str]:
        """`PM_*` variables the process's loader would not put into its settings (refused or ignored)."""
        fields = set(self.settings_type.__struct_fields__)
        common = set(CommonSettings.__struct_fields__)
        unread = []
        for name in env:
            if not name.startswith("PM_"):
                continue
            rest = name[3:]
            if self.prefix and rest.startswith(self.prefix):
                if rest[len(self.prefix) :].lower() in fields - common:
                    continue
            elif rest.lower() in common and rest.lower() in fields:
                continue
            unread.append(name)
        return unread


def _cli_process() -> Process:
    return Process(None, CommonSettings, "", lambda env: load_settings(CommonSettings, "", env))


def _member_process(member: fleet.Member) -> Process:
    module = importlib.import_module(f"{member.module}.settings")
    return Process(member, module.Settings, member.prefix, module.load)


class Compose:
    """compose/docker-compose.yml, and the PM process each of its services runs."""

    REQUIRED_ENV: ClassVar[dict[str, str]] = {
        "PM_KEY_ENCRYPTION_KEY": base64.b64encode(bytes(range(32))).decode()
    }
    """What an operator must provide (compose/.env): a well-formed stand-in for the checks."""

    class MissingVariableError(Exception):
        """A `${VAR:?message}` whose variable is not set: compose refuses the file."""

    @staticmethod
    def interpolate(value: Any, env: Mapping[str, str]) -> Any:
        """Compose's variable interpolation (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`)."""
        if isinstance(value, dict):
            return {k: Compose.interpolate(v, env) for k, v in value.items()}
        if isinstance(value, list):
            return [Compose.interpolate(v, env) for v in value]
        if not isinstance(value, str):
            return value

        def one(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            name = match.group("name") or match.group("bare")
            op, arg = match.group("op"), match.group("arg") or ""
            current = env.get(name)
            unset = current is None or (current == "" and op is not None and op.startswith(":"))
            if op in (":-", "-"):
                return arg if unset else str(current)
            if op in (":?", "?"):
                if unset:
                    raise Compose.MissingVariableError(f"{name}: {arg}")
                return str(current)
            return "" if current is None else current

        return _VARIABLE.sub(one, value)

    def __init__(self, path: Path) -> None:
        raw = yaml.safe_load(path.read_text())
        assert isinstance(raw, dict)
        self.raw: dict[str, Any] = raw
        """The file as written."""
        file = self.interpolate(raw, self.REQUIRED_ENV)
        assert isinstance(file, dict)
        self.file: dict[str, Any] = file
        """The file as docker compose sees it with only the required variables set."""
        services = file["services"]
        assert isinstance(services, dict)
        self.services: dict[str, dict[str, Any]] = services

    def environment(self, service: str) -> dict[str, str]:
        """The environment of the named service."""
        env = self.services[service].get("environment") or {}
        if isinstance(env, list):
            pairs = (item.split("=", 1) for item in env)
            return {k: v for k, v in pairs}
        return {k: "" if v is None else str(v) for k, v in env.items()}

    @staticmethod
    def command(service: Mapping[str, Any]) -> list[str]:
        cmd = service.get("command") or []
        return cmd.split() if isinstance(cmd, str) else list(cmd)

    @staticmethod
    def is_one_shot(service: Mapping[str, Any]) -> bool:
        return str(service.get("restart", "no")) == "no"

    def health_url(self, service: str) -> tuple[int, str] | None:
        """The port and path of the URL the named service's health check calls, if any."""
        test = (self.services[service].get("healthcheck") or {}).get("test")
        text = " ".join(test) if isinstance(test, list) else str(test or "")
        match = _HEALTH_URL.search(text)
        return (int(match["port"]), match["path"]) if match else None

    @staticmethod
    def setting(settings: msgspec.Struct, field: str) -> Any:
        return getattr(settings, field)

    def process_of(self, service: Mapping[str, Any]) -> Process | None:
        """The PM process a compose service runs (None for Redis, PostgreSQL, …)."""
        cmd = self.command(service)
        if cmd[:2] == ["sh", "-c"]:  # a one-shot script of `pm` commands
            cmd = cmd[2].replace("&&", " ").split()
        if cmd[:1] == ["pm"]:
            return _cli_process()
        for member in fleet.FLEET:
            if cmd[:1] == [member.script] or cmd[:3] == ["python", "-m", member.module]:
                return _member_process(member)
        return None

    def pm_services(self) -> dict[str, Process]:
        found = {name: self.process_of(svc) for name, svc in self.services.items()}
        return {name: p for name, p in found.items() if p is not None}

    def port_of(self, service: str) -> int:
        """The port a PM service listens on, as its settings read the compose environment."""
        settings = self.pm_services()[service].load(self.environment(service))
        port = self.setting(settings, "port")
        assert isinstance(port, int)
        return port


@pytest.fixture(scope="session")
def compose() -> Compose:
    return Compose(COMPOSE_FILE)


# ---------------------------------------------------------------------------------------------------
# The Kubernetes manifests
# ---------------------------------------------------------------------------------------------------


class Manifests:
    """The objects of compose/k8s's kustomization, and the environment and settings of its pods."""

    POD_NAME: ClassVar[str] = "pod-name-from-the-downward-api"
    """What a `fieldRef` to `metadata.name` stands for."""
    VALID_KEY: ClassVar[str] = base64.b64encode(bytes(range(32))).decode()
    VALID_PROXY_SECRET: ClassVar[str] = "an-operators-proxy-secret-of-32-characters"
    """Stands in for the operator's PM_GATEWAY_PROXY_SECRET (the committed Secret's is a placeholder)."""
    """Stands in for the operator's PM_KEY_ENCRYPTION_KEY: the committed Secret holds a placeholder."""
    LOADERS: ClassVar[dict[str, Callable[[Mapping[str, str]], ServiceSettings]]] = {
        m.name: importlib.import_module(f"{m.module}.settings").load for m in fleet.SERVICES
    }
    """Each service's settings loader, by its name (the name of its Deployment)."""

    def __init__(self, folder: Path) -> None:
        kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
        assert isinstance(kustomization, dict)
        self.kustomization: Obj = kustomization
        found: list[Obj] = []
        for resource in kustomization["resources"]:
            for doc in yaml.safe_load_all((folder / resource).read_text()):
                if doc:
                    found.append(doc)
        found += [
            self.generated(folder, kustomization, g) for g in kustomization.get("configMapGenerator", [])
        ]
        self.objects: tuple[Obj, ...] = tuple(found)

    GENERATED_HASH: ClassVar[re.Pattern[str]] = re.compile(r"-[a-z0-9]{10}$")
    """What kustomize appends to a generated object's name (a hash of its content)."""

    @staticmethod
    def generated(folder: Path, kustomization: Obj, generator: Obj) -> Obj:
        """The ConfigMap a `configMapGenerator` entry makes, under its name without kustomize's hash."""
        assert set(generator) <= {"name", "files", "options"}, f"unexpected generator fields {generator}"
        data = {}
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")  # `key=path`, or `path` (its file name is the key)
            data[key or Path(path).name] = (folder / path).read_text()
        metadata: Obj = {"name": generator["name"], "namespace": kustomization["namespace"]}
        metadata["labels"] = dict(generator.get("options", {}).get("labels", {}))
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": data}

    def generated_names(self) -> set[str]:
        return {g["name"] for g in self.kustomization.get("configMapGenerator", [])}

    def all(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> Obj:
        matches = [o for o in self.all(kind) if o["metadata"]["name"] == name]
        assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
        return matches[0]

    @staticmethod
    def id(obj: Obj) -> str:
        return f"{obj['kind']}/{obj['metadata']['name']}"

    @staticmethod
    def container(deployment: Obj) -> Obj:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        assert len(containers) == 1, f"{Manifests.id(deployment)}: one container per pod expected"
        container: Obj = containers[0]
        return container

    @staticmethod
    def secret_data(secret: Obj) -> dict[str, str]:
        data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
        data.update(secret.get("stringData") or {})
        return data

    def container_env(self, container: Obj) -> dict[str, str]:
        """The environment a container starts with (envFrom in order, then env, which wins)."""
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.one("ConfigMap", source["configMapRef"]["name"])["data"])
            elif "secretRef" in source:
                env.update(self.secret_data(self.one("Secret", source["secretRef"]["name"])))
            else:
                raise AssertionError(f"unexpected envFrom source {source}")
        for var in container.get("env", []):
            if "value" in var:
                env[var["name"]] = var["value"]
                continue
            ref = var["valueFrom"]
            if "fieldRef" in ref:
                assert ref["fieldRef"]["fieldPath"] == "metadata.name", var
                env[var["name"]] = self.POD_NAME
            elif "secretKeyRef" in ref:
                data = self.secret_data(self.one("Secret", ref["secretKeyRef"]["name"]))
                assert ref["secretKeyRef"]["key"] in data, f"{var['name']}: no such key in its Secret"
                env[var["name"]] = data[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                data = self.one("ConfigMap", ref["configMapKeyRef"]["name"])["data"]
                env[var["name"]] = data[ref["configMapKeyRef"]["key"]]
            else:
                raise AssertionError(f"unexpected valueFrom {ref}")
        return env

    def service_env(self, name: str) -> dict[str, str]:
        """The environment of the service's pods, with a valid key in place of the placeholder."""
        env = self.container_env(self.container(self.one("Deployment", name)))
        if "PM_KEY_ENCRYPTION_KEY" in env:
            env["PM_KEY_ENCRYPTION_KEY"] = self.VALID_KEY
        if "PM_GATEWAY_PROXY_SECRET" in env:
            env["PM_GATEWAY_PROXY_SECRET"] = self.VALID_PROXY_SECRET
        return env

    def settings(self, name: str) -> ServiceSettings:
        return self.LOADERS[name](self.service_env(name))

    def common(self) -> CommonSettings:
        """The fleet's common settings as the pods get them (from the migration Job's environment)."""
        job = self.one("Job", "pm-migrate")
        return load_settings(
            CommonSettings, "", self.container_env(job["spec"]["template"]["spec"]["containers"][0])
        )

    @staticmethod
    def port(container: Obj, port: int | str) -> int:
        """A probe's port, resolving a named container port."""
        if isinstance(port, int):
            return port
        by_name = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        assert port in by_name, f"no container port named {port!r}"
        return int(by_name[port])

    @staticmethod
    def selects(selector: Obj, labels: Mapping[str, str]) -> bool:
        assert set(selector) <= {"matchLabels"}, "only matchLabels selectors are checked here"
        return all(labels.get(k) == v for k, v in selector["matchLabels"].items())

    @staticmethod
    def pod_labels(deployment: Obj) -> dict[str, str]:
        labels: dict[str, str] = deployment["spec"]["template"]["metadata"]["labels"]
        return labels

    @staticmethod
    def image_name(container: Obj) -> str:
        """The image without registry tag or digest: `pm-gateway`."""
        return str(container["image"]).split("@")[0].rsplit(":", 1)[0]


@functools.cache
def _manifests() -> Manifests:
    return Manifests(K8S)


@pytest.fixture(scope="session")
def manifests() -> Manifests:
    return _manifests()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`core_object`: each Kubernetes core object; `keda_object`: each KEDA object (by `Kind/name`)."""
    for argument, keda in (("core_object", False), ("keda_object", True)):
        if argument in metafunc.fixturenames:
            chosen = [o for o in _manifests().objects if o["apiVersion"].startswith("keda.sh/") == keda]
            metafunc.parametrize(argument, chosen, ids=Manifests.id)
