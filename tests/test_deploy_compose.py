"""Offline checks of the deployment pack: the image, compose/docker-compose.yml, Prometheus and Grafana.

No Docker engine is needed (nor used): the compose file is validated against the Compose
Specification's JSON Schema (vendored in compose/schemas), then read for what the schema cannot know —
every member of the roster (pm_shared.fleet) runs, on its port, from the image of its own workspace
member (the Dockerfile's PACKAGE), and no other PM process runs but the migrate job; every
long-running service has a health check, every dependency exists and can be met, every `PM_*`
variable a PM service gets is one its settings loader reads (an unknown one would stop it at start),
the PSP sandboxes call the gateway back with the secrets it checks, the ledger URL reaches the
TigerBeetle service. What an image holds is proved by tests/test_members.py (each member installed
alone, with the Dockerfile's `uv sync`). The dashboard and the alert rules may only use metrics the
code exports, with the labels it gives them (collected from the sources' prometheus_client
constructors, and cross-checked against the live registry), and `promtool` checks the rules and the
Prometheus config when it is installed.
"""

from __future__ import annotations

import ast
import base64
import importlib
import ipaddress
import json
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import msgspec
import pytest
import yaml

from pm_shared import fleet
from pm_shared.ledger.urls import TigerBeetleUrl, parse
from pm_shared.settings import CommonSettings, SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
SCHEMA_FILE = COMPOSE_DIR / "schemas" / "compose-spec.json"
PROMETHEUS_CONFIG = COMPOSE_DIR / "prometheus" / "prometheus.yml"
ALERTS_FILE = COMPOSE_DIR / "prometheus" / "alerts.yml"
DASHBOARD_FILE = COMPOSE_DIR / "grafana" / "dashboards" / "pm.json"
GRAFANA_PROVISIONING = COMPOSE_DIR / "grafana" / "provisioning"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# What an operator must provide (compose/.env): a well-formed stand-in for the checks.
REQUIRED_ENV = {"PM_KEY_ENCRYPTION_KEY": base64.b64encode(bytes(range(32))).decode()}
# Hosts of package registries: none may be named in the image or the compose pack.
REGISTRY_HOSTS = ("pypi.org", "pythonhosted.org", "pypi.python.org", "registry.npmjs.org", "deb.debian.org")
# Series Prometheus makes itself for every target.
PROMETHEUS_SERIES = {"up": frozenset({"job", "instance"})}
TARGET_LABELS = frozenset({"job", "instance"})


# ---------------------------------------------------------------------------------------------------
# Reading the compose file
# ---------------------------------------------------------------------------------------------------

_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    """A `${VAR:?message}` whose variable is not set: compose refuses the file."""


def interpolate(value: Any, env: Mapping[str, str]) -> Any:
    """Compose's variable interpolation (`$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?error}`, `$$`)."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
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
                raise MissingVariableError(f"{name}: {arg}")
            return str(current)
        return "" if current is None else current

    return _VARIABLE.sub(one, value)


@cache
def raw_compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


@cache
def compose() -> dict[str, Any]:
    """The compose file as docker compose sees it with only the required variables set."""
    result = interpolate(raw_compose(), REQUIRED_ENV)
    assert isinstance(result, dict)
    return result


def services() -> dict[str, dict[str, Any]]:
    result = compose()["services"]
    assert isinstance(result, dict)
    return result


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) for item in env)
        return {k: v for k, v in pairs}
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command(service: Mapping[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else list(cmd)


def is_one_shot(service: Mapping[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


# ---------------------------------------------------------------------------------------------------
# Which PM process a service runs, and the settings it reads
# ---------------------------------------------------------------------------------------------------


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


@dataclass(frozen=True)
class WorkspaceMember:
    folder: str
    """`services/gateway`: relative to the repository."""
    distribution: str
    """`pm-gateway`: what an image installs (the Dockerfile's PACKAGE)."""
    module: str
    scripts: dict[str, str]
    """Its console scripts: `pm-gateway` → `pm_gateway.main:run`."""


@cache
def workspace_members() -> tuple[WorkspaceMember, ...]:
    """Every workspace member, from the root pyproject's member globs and the members' pyprojects."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]
    found = []
    for pyproject in sorted(p for g in patterns for p in ROOT.glob(f"{g}/pyproject.toml")):
        data = tomllib.loads(pyproject.read_text())
        (package,) = data["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
        found.append(
            WorkspaceMember(
                pyproject.parent.relative_to(ROOT).as_posix(),
                data["project"]["name"],
                Path(package).name,
                data["project"].get("scripts", {}),
            )
        )
    return tuple(found)


def workspace_member(module: str) -> WorkspaceMember:
    (found,) = [m for m in workspace_members() if m.module == module]
    return found


TOOLS = "pm_tools"
"""The member whose image runs the `pm` CLI (the migrate job)."""


def _cli_process() -> Process:
    return Process(None, CommonSettings, "", lambda env: load_settings(CommonSettings, "", env))


def _member_process(member: fleet.Member) -> Process:
    module = importlib.import_module(f"{member.module}.settings")
    return Process(member, module.Settings, member.prefix, module.load)


def process_of(service: Mapping[str, Any]) -> Process | None:
    """The PM process a compose service runs (None for Redis, PostgreSQL, …)."""
    cmd = command(service)
    if cmd[:2] == ["sh", "-c"]:  # a one-shot script of `pm` commands
        cmd = cmd[2].replace("&&", " ").split()
    if cmd[:1] == ["pm"]:
        return _cli_process()
    for member in fleet.FLEET:
        if cmd[:1] == [member.script] or cmd[:3] == ["python", "-m", member.module]:
            return _member_process(member)
    return None


def pm_services() -> dict[str, Process]:
    found = {name: process_of(svc) for name, svc in services().items()}
    return {name: p for name, p in found.items() if p is not None}


def setting(settings: msgspec.Struct, field: str) -> Any:
    return getattr(settings, field)


def port_of(service: str) -> int:
    """The port a PM service listens on, as its settings read the compose environment."""
    port = setting(pm_services()[service].load(environment(services()[service])), "port")
    assert isinstance(port, int)
    return port


def unread_variables(env: Mapping[str, str], process: Process) -> list[str]:
    """`PM_*` variables the process's loader would not put into its settings (refused or ignored)."""
    fields = set(process.settings_type.__struct_fields__)
    common = set(CommonSettings.__struct_fields__)
    unread = []
    for name in env:
        if not name.startswith("PM_"):
            continue
        rest = name[3:]
        if process.prefix and rest.startswith(process.prefix):
            if rest[len(process.prefix) :].lower() in fields - common:
                continue
        elif rest.lower() in common and rest.lower() in fields:
            continue
        unread.append(name)
    return unread


_HEALTH_URL = re.compile(r"http://(?:127\.0\.0\.1|localhost):(?P<port>\d+)(?P<path>/[A-Za-z/_-]*)")


def health_url(service: Mapping[str, Any]) -> tuple[int, str] | None:
    test = (service.get("healthcheck") or {}).get("test")
    text = " ".join(test) if isinstance(test, list) else str(test or "")
    match = _HEALTH_URL.search(text)
    return (int(match["port"]), match["path"]) if match else None


# ---------------------------------------------------------------------------------------------------
# (a) The Compose Specification
# ---------------------------------------------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (("as written", raw_compose()), ("interpolated", compose())):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{COMPOSE_FILE.name} ({label}) breaks the Compose Specification:\n" + "\n".join(
            f"  {'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors[:20]
        )


def test_the_encryption_key_must_be_given_not_defaulted() -> None:
    # Without PM_KEY_ENCRYPTION_KEY compose refuses the file, naming what to set.
    with pytest.raises(MissingVariableError, match="PM_KEY_ENCRYPTION_KEY"):
        interpolate(raw_compose(), {})
    example = (COMPOSE_DIR / ".env.example").read_text()
    assert re.search(r"^PM_KEY_ENCRYPTION_KEY=", example, re.M), ".env.example must document the key"
    every_value = json.dumps(raw_compose())
    assert every_value.count("${PM_KEY_ENCRYPTION_KEY") >= 1


# ---------------------------------------------------------------------------------------------------
# (b) What the schema cannot see
# ---------------------------------------------------------------------------------------------------


def test_every_long_running_service_has_a_health_check() -> None:
    missing = []
    for name, svc in services().items():
        if is_one_shot(svc):
            continue
        check = svc.get("healthcheck") or {}
        test = check.get("test")
        if not test or check.get("disable") or (isinstance(test, list) and test[0] == "NONE"):
            missing.append(name)
    assert not missing, f"services without a health check: {missing}"


def test_one_shot_jobs_are_waited_for_and_the_rest_restart() -> None:
    one_shots = {name for name, svc in services().items() if is_one_shot(svc)}
    assert {"migrate", "tigerbeetle-format"} <= one_shots
    waited = {
        dep
        for svc in services().values()
        for dep, cond in (svc.get("depends_on") or {}).items()
        if cond.get("condition") == "service_completed_successfully"
    }
    assert one_shots <= waited, f"one-shot jobs nobody waits for: {sorted(one_shots - waited)}"


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_services_get_longer_to_stop_than_their_shutdown_grace() -> None:
    # SIGTERM: a service finishes and acks the batch in hand within PM_SHUTDOWN_GRACE_S; compose must
    # not SIGKILL it before (its default is 10 s).
    for name, process in pm_services().items():
        svc = services()[name]
        if is_one_shot(svc) or not issubclass(process.settings_type, CommonSettings):
            continue
        grace = setting(process.load(environment(svc)), "shutdown_grace_s")
        stop = _seconds(str(svc.get("stop_grace_period", "10s")))
        assert stop > grace, f"{name}: stop_grace_period {stop}s, PM_SHUTDOWN_GRACE_S {grace}s"


def test_every_dependency_exists_and_its_condition_can_be_met() -> None:
    problems = []
    for name, svc in services().items():
        deps = svc.get("depends_on") or {}
        for dep, spec in deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps):
            target = services().get(dep)
            if target is None:
                problems.append(f"{name} depends on unknown service {dep!r}")
                continue
            condition = spec.get("condition", "service_started")
            if condition == "service_healthy" and not target.get("healthcheck"):
                problems.append(f"{name} waits for {dep} to be healthy, but {dep} has no health check")
            if condition == "service_completed_successfully" and not is_one_shot(target):
                problems.append(f"{name} waits for {dep} to complete, but {dep} is restarted forever")
    assert not problems, "\n".join(problems)
    # No service starts before the migrations and the streams are provisioned.
    for name, process in pm_services().items():
        if process.member is None or process.member.kind != "service":
            continue
        deps = services()[name].get("depends_on") or {}
        assert deps.get("migrate", {}).get("condition") == "service_completed_successfully", name


def test_migrate_job_migrates_then_provisions_the_streams() -> None:
    script = command(services()["migrate"])[2]
    steps = [step.strip() for step in script.split("&&")]
    assert steps == ["pm migrate", "pm streams --provision"]


def test_every_member_of_the_roster_runs_and_nothing_else() -> None:
    runs: dict[str, list[str]] = {}
    for name, process in pm_services().items():
        runs.setdefault(process.member.name if process.member else "pm", []).append(name)
    for member in fleet.FLEET:
        # A single-active member runs twice: the lease holder and a standby ready to take over.
        expected = [member.name, f"{member.name}-standby"] if member.single_active else [member.name]
        assert sorted(runs.pop(member.name, [])) == expected, f"{member.name} runs as {expected}"
    assert runs == {"pm": ["migrate"]}, f"PM processes outside the roster: {runs}"


def test_every_member_listens_on_its_port_from_the_roster() -> None:
    for name, process in pm_services().items():
        if process.member is None:
            continue
        assert port_of(name) == process.member.port, name
        assert environment(services()[name])[process.member.port_variable] == str(process.member.port)
        health = health_url(services()[name])
        # A standby is alive but never ready: a single-active member is checked on /healthz.
        if process.member.single_active:
            assert health is not None and health[1] == "/healthz", f"{name}: {health}"


def test_every_pm_variable_is_read_by_the_settings_of_its_service() -> None:
    found = pm_services()
    problems = []
    for name, process in found.items():
        env = environment(services()[name])
        try:
            settings = process.load(env)
        except SettingsError as exc:
            problems.append(f"{name}: its settings loader refuses the environment: {exc}")
            continue
        unread = unread_variables(env, process)
        if unread:
            problems.append(f"{name}: variables its settings never read: {unread}")
        if "host" in process.settings_type.__struct_fields__ and setting(settings, "host") != "0.0.0.0":
            problems.append(
                f"{name}: listens on {setting(settings, 'host')}, unreachable from other containers"
            )
        if "port" in process.settings_type.__struct_fields__:
            health = health_url(services()[name])
            if health is None:
                problems.append(f"{name}: its health check calls no http://127.0.0.1:<port>/… URL")
            else:
                port, path = health
                if port != setting(settings, "port"):
                    problems.append(
                        f"{name}: health check on port {port}, service on {setting(settings, 'port')}"
                    )
                if path not in ("/healthz", "/readyz"):
                    problems.append(f"{name}: health check on {path}, not /healthz or /readyz")
    assert not problems, "\n".join(problems)


def test_a_misspelt_variable_is_caught() -> None:
    # The check above would be worthless if an unknown variable slipped through it.
    orchestrator, gateway = fleet.ORCHESTRATOR, fleet.GATEWAY
    process = pm_services()[orchestrator.name]
    env = {**environment(services()[orchestrator.name]), f"PM_{orchestrator.prefix}RESUME_AFTER": "30"}
    with pytest.raises(SettingsError):
        process.load(env)
    assert unread_variables({gateway.port_variable: "8080"}, process) == [gateway.port_variable]


PSPS = (("ipps", fleet.ADAPTER_IPPS, fleet.IPPS_SANDBOX), ("qp", fleet.ADAPTER_QP, fleet.QP_SANDBOX))
"""Each PSP: its name in the gateway's callback path, its adapter and the sandbox standing in for it."""


def _secret(member: fleet.Member, field: str) -> str:
    """The value of the member's own variable `PM_<prefix><field>` in the compose file."""
    variable = f"PM_{member.prefix}{field}"
    value = environment(services()[member.name]).get(variable)
    assert value, f"{member.name} gets no {variable}"
    return value


def _gateway_routes() -> set[str]:
    from pm_gateway.app import create_app
    from pm_gateway.settings import load

    app = create_app(load(environment(services()[fleet.GATEWAY.name])))

    def walk(routes: list[Any], prefix: str = "") -> Iterator[str]:
        for route in routes:
            path = prefix + getattr(route, "path", "")
            children = getattr(route, "routes", None)
            if children:
                yield from walk(list(children), path)
            else:
                yield path

    return set(walk(list(app.routes)))


def test_sandboxes_call_the_gateway_back_with_the_secrets_it_checks() -> None:
    gateway = fleet.GATEWAY
    gateway_port = port_of(gateway.name)
    routes = _gateway_routes()
    for psp, _, sandbox in PSPS:
        url = urlsplit(_secret(sandbox, "CALLBACK_URL"))
        assert (url.hostname, url.port) == (gateway.name, gateway_port), (
            f"{sandbox.name} calls back {url.geturl()}"
        )
        assert url.path == f"/v1/webhooks/{psp}" and url.path in routes
        # The gateway checks the socket peer against its allowlist: the sandbox's fixed address.
        address = services()[sandbox.name]["networks"]["pm"]["ipv4_address"]
        allowlist = _secret(gateway, f"{psp.upper()}_CALLBACK_ALLOWLIST")
        nets = [ipaddress.ip_network(part.strip(), strict=False) for part in allowlist.split(",")]
        assert any(ipaddress.ip_address(address) in net for net in nets), (
            f"{sandbox.name} {address} not in {nets}"
        )
    assert _secret(fleet.IPPS_SANDBOX, "CALLBACK_SECRET") == _secret(gateway, "IPPS_CALLBACK_SECRET")
    qp = _secret(fleet.QP_SANDBOX, "SECRET")
    assert qp == _secret(gateway, "QP_CALLBACK_SECRET") == _secret(fleet.ADAPTER_QP, "QP_SECRET")
    assert _secret(fleet.IPPS_SANDBOX, "AUTH_SECRET") == _secret(fleet.ADAPTER_IPPS, "IPPS_AUTH_SECRET")


def test_adapters_talk_to_their_sandboxes() -> None:
    for psp, adapter, sandbox in PSPS:
        url = urlsplit(_secret(adapter, f"{psp.upper()}_URL"))
        sandbox_port = port_of(sandbox.name)
        assert (url.hostname, url.port) == (sandbox.name, sandbox_port), f"{adapter.name}: {url.geturl()}"
        deps = services()[adapter.name].get("depends_on") or {}
        assert deps.get(sandbox.name, {}).get("condition") == "service_healthy"


def test_redis_keeps_an_append_only_file_and_never_evicts() -> None:
    redis = services()["redis"]
    args = command(redis)
    options = dict(zip(args[1::2], args[2::2], strict=False))
    assert args[0] == "redis-server"
    assert options.get("--appendonly") == "yes", args
    assert options.get("--maxmemory-policy") == "noeviction", args
    assert options.get("--appendfsync", "everysec") in ("everysec", "always")
    assert any(str(v).endswith(":/data") for v in redis.get("volumes", [])), "the AOF must live on a volume"
    assert str(redis["image"]).split(":", 1)[1].startswith("7"), "Redis 7"


def _locked_version(package: str) -> str:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    versions = {str(p["version"]) for p in lock["package"] if p["name"] == package}
    assert len(versions) == 1, versions
    return versions.pop()


def test_tigerbeetle_is_the_official_image_at_the_client_version() -> None:
    expected = f"ghcr.io/tigerbeetle/tigerbeetle:{_locked_version('tigerbeetle')}"
    tb_services = {n: s for n, s in services().items() if "tigerbeetle" in str(s.get("image", ""))}
    assert set(tb_services) == {"tigerbeetle", "tigerbeetle-format"}
    for name, svc in tb_services.items():
        assert svc["image"] == expected, f"{name}: {svc['image']} (the lock has {expected})"
    fmt, start = " ".join(command(tb_services["tigerbeetle-format"])), command(tb_services["tigerbeetle"])
    assert start[0] == "start" and "format" in fmt
    data_file = start[-1]
    assert data_file in fmt, "format and start must use the same data file"
    assert tb_services["tigerbeetle"]["volumes"] == tb_services["tigerbeetle-format"]["volumes"]
    assert "--development" not in fmt and "--development" not in start, "the writer needs 1 MiB requests"
    deps = tb_services["tigerbeetle"]["depends_on"]
    assert deps["tigerbeetle-format"]["condition"] == "service_completed_successfully"


def test_the_ledger_url_reaches_the_tigerbeetle_service() -> None:
    import tigerbeetle

    tb = services()["tigerbeetle"]
    listen = next(a.split("=", 1)[1] for a in command(tb) if a.startswith("--addresses="))
    port = int(listen.rsplit(":", 1)[1])
    address = tb["networks"]["pm"]["ipv4_address"]
    # Its health check looks for a socket listening on that port in /proc/net/tcp (hex, upper case).
    probe = re.search(r":([0-9A-F]{4}) 00000000:0000 0A", " ".join(tb["healthcheck"]["test"]))
    assert probe is not None and int(probe[1], 16) == port, tb["healthcheck"]["test"]
    subnet = ipaddress.ip_network(compose()["networks"]["pm"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    cluster = re.search(r"--cluster=(\d+)", " ".join(command(services()["tigerbeetle-format"])))
    assert cluster is not None
    for name in pm_services():
        url = environment(services()[name]).get("PM_LEDGER_URL")
        if url is None:
            continue
        target = parse(url)
        assert isinstance(target, TigerBeetleUrl), f"{name}: {url}"
        assert target.cluster_id == int(cluster[1])
        assert target.addresses == f"{address}:{port}", f"{name}: {url}"
    # The official client takes IP literals only: a service name fails its init (before any connection),
    # which is why the compose file gives TigerBeetle a fixed address. (No client is made for the compose
    # address itself: its background thread would try to reach it from this machine.)
    ipaddress.ip_address(address)
    with pytest.raises(Exception):  # noqa: B017 - the client's own init error
        tigerbeetle.ClientSync(cluster_id=0, replica_addresses=f"tigerbeetle:{port}")


@cache
def prometheus_config() -> dict[str, Any]:
    data = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def test_prometheus_scrapes_every_pm_service_and_loads_the_rules() -> None:
    targets: dict[str, str] = {}
    for job in prometheus_config()["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                targets[target] = job["job_name"]
    missing = []
    for name, process in pm_services().items():
        if not process.has_metrics:
            continue
        port = port_of(name)
        if f"{name}:{port}" not in targets:
            missing.append(f"{name}:{port}")
    assert not missing, f"PM services Prometheus does not scrape: {missing}"
    for target in targets:
        host = target.rsplit(":", 1)[0]
        assert host in services() or host == "127.0.0.1", f"scrape target {target} names no service"
    # The rules are loaded, and mounted where the config points.
    prom = services()["prometheus"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"] if str(v).startswith("./")}
    config_in_container = Path(next(t for t, s in mounts.items() if s.endswith("prometheus.yml")))
    for rule_file in prometheus_config()["rule_files"]:
        in_container = config_in_container.parent / rule_file
        assert str(in_container) in mounts, f"{in_container} is not mounted"
        assert (COMPOSE_DIR / mounts[str(in_container)]).resolve() == ALERTS_FILE.resolve()


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = services()["grafana"]
    mounts = {
        v.split(":")[1]: (COMPOSE_DIR / v.split(":")[0]).resolve()
        for v in grafana["volumes"]
        if str(v).startswith("./")
    }
    assert mounts.get("/etc/grafana/provisioning") == GRAFANA_PROVISIONING.resolve()
    providers = [
        p
        for f in sorted((GRAFANA_PROVISIONING / "dashboards").glob("*.y*ml"))
        for p in yaml.safe_load(f.read_text())["providers"]
    ]
    assert providers, "no dashboard provider"
    dashboard_dirs = {p["options"]["path"] for p in providers}
    assert any(mounts.get(d) == DASHBOARD_FILE.parent.resolve() for d in dashboard_dirs), (
        dashboard_dirs,
        mounts,
    )
    datasources = [
        d
        for f in sorted((GRAFANA_PROVISIONING / "datasources").glob("*.y*ml"))
        for d in yaml.safe_load(f.read_text())["datasources"]
    ]
    uids = {d["uid"] for d in datasources if d["type"] == "prometheus"}
    prometheus = urlsplit(next(d["url"] for d in datasources if d["type"] == "prometheus"))
    assert prometheus.hostname == "prometheus" and prometheus.hostname in services()
    used = {ds["uid"] for ds in _datasource_refs(json.loads(DASHBOARD_FILE.read_text()))}
    assert used and used <= uids, f"the dashboard uses datasources {used}, provisioned: {uids}"


def _datasource_refs(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        ds = node.get("datasource")
        if isinstance(ds, dict):
            yield ds
        for value in node.values():
            yield from _datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _datasource_refs(value)


# ---------------------------------------------------------------------------------------------------
# The image
# ---------------------------------------------------------------------------------------------------


def _dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def _dockerignore_excludes(path: str) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins; `!` re-includes)."""
    excluded = False
    for raw in DOCKERIGNORE.read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        # A pattern matches the path or any of its parent directories.
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        regex = re.compile(
            "^"
            + "".join(
                ".*" if tok == "**" else "[^/]*" if tok == "*" else "[^/]" if tok == "?" else re.escape(tok)
                for tok in re.split(r"(\*\*|\*|\?)", pattern)
            ).replace(".*/", "(?:.*/)?")
            + "$"
        )
        if any(regex.match(c) for c in candidates):
            excluded = not negate
    return excluded


def test_the_image_is_multi_stage_locked_and_runs_as_a_user() -> None:
    steps = _dockerfile_instructions()
    stages = [rest for kw, rest in steps if kw == "FROM"]
    assert len(stages) >= 2, "build and runtime stages"
    syncs = [rest for kw, rest in steps if kw == "RUN" and "uv sync" in rest]
    assert syncs and all("--frozen" in s or "--locked" in s for s in syncs), "uv sync must follow uv.lock"
    assert all("--no-dev" in s for s in syncs)
    final = max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")
    users = [rest for kw, rest in steps[final:] if kw == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"the runtime user is {users}"
    text = DOCKERFILE.read_text() + DOCKERIGNORE.read_text()
    for path in [COMPOSE_FILE, PROMETHEUS_CONFIG, COMPOSE_DIR / ".env.example"]:
        text += path.read_text()
    named = [host for host in REGISTRY_HOSTS if host in text]
    assert not named, f"package registry hosts named: {named}"


def test_everything_the_image_copies_is_in_the_build_context() -> None:
    copied = []
    for kw, rest in _dockerfile_instructions():
        if kw != "COPY" or rest.startswith("--from"):
            continue
        args = [a for a in rest.split() if not a.startswith("--")]
        copied += args[:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
        assert not _dockerignore_excludes(source), f"COPY {source}: left out by .dockerignore"
        if (ROOT / source).is_dir():
            for file in (ROOT / source).rglob("*.py"):
                rel = file.relative_to(ROOT).as_posix()
                assert "__pycache__" in rel or not _dockerignore_excludes(rel), rel
    # Every workspace member's pyproject (uv reads the whole workspace) and sources are copied.
    for member in workspace_members():
        assert f"{member.folder}/pyproject.toml" in copied, member.folder
        assert f"{member.folder}/src" in copied, member.folder
    assert {"pyproject.toml", "uv.lock"} <= set(copied)
    # What stays out: tests, the developer's environment, the compose pack itself.
    for path in ("tests/test_deploy_compose.py", ".venv/bin/python", ".pm/env", "compose/docker-compose.yml"):
        assert _dockerignore_excludes(path), path


_PACKAGE = re.compile(r'--package\s+"?\$\{?PACKAGE\}?"?(?:\s|$)')


def test_the_image_installs_the_one_member_its_build_argument_names() -> None:
    steps = _dockerfile_instructions()
    build = steps[: max(i for i, (kw, _) in enumerate(steps) if kw == "FROM")]
    assert ("ARG", "PACKAGE") in build, "the build stage takes the member as ARG PACKAGE"
    syncs = [i for i, (kw, rest) in enumerate(build) if kw == "RUN" and "uv sync" in rest]
    assert len(syncs) == 2, "two syncs: the dependencies, then the member"
    for i in syncs:
        assert _PACKAGE.search(build[i][1]), f"not one member: {build[i][1]}"
        assert not re.search(r"--all-packages|--all-groups|--group|--extra|--all-extras", build[i][1])
    # Dependencies first (a layer that survives a change of the sources), then the member's wheels.
    sources = [i for i, (kw, rest) in enumerate(build) if kw == "COPY" and rest.split()[0].endswith("/src")]
    deps, member = (build[i][1] for i in syncs)
    assert "--no-install-workspace" in deps and syncs[0] < min(sources), deps
    assert "--no-editable" in member and syncs[1] > max(sources), member


def _image_member(name: str) -> WorkspaceMember:
    """The workspace member a compose service's image installs: its build argument PACKAGE."""
    build = services()[name].get("build") or {}
    assert (COMPOSE_DIR / build.get("context", "")).resolve() == ROOT, f"{name}: not built from the workspace"
    assert (ROOT / build.get("dockerfile", "Dockerfile")).resolve() == DOCKERFILE
    package = (build.get("args") or {}).get("PACKAGE")
    found = [m for m in workspace_members() if m.distribution == package]
    assert len(found) == 1, f"{name}: the build argument PACKAGE {package!r} is no workspace member"
    assert services()[name]["image"].split(":")[0] == package, f"{name}: the image is named for {package}"
    return found[0]


def test_each_pm_process_runs_from_the_image_of_its_own_member() -> None:
    built = {name for name, svc in raw_compose()["services"].items() if "build" in svc}
    assert built == set(pm_services()), "PM processes, and only they, are built from the Dockerfile"
    for name, process in pm_services().items():
        image = _image_member(name)
        cmd = command(services()[name])
        if cmd[:2] == ["sh", "-c"]:
            cmd = cmd[2].replace("&&", " ").split()
        expected = process.member.module if process.member else TOOLS
        assert image.module == expected, f"{name} runs {expected} from the image of {image.distribution}"
        if cmd[0] in ("python", "python3"):
            assert cmd[1:3] == ["-m", image.module], f"{name}: {cmd}"
        else:
            assert cmd[0] in image.scripts, f"{name}: {cmd[0]} is no console script of {image.distribution}"
            assert image.scripts[cmd[0]].split(".")[0] == image.module


# ---------------------------------------------------------------------------------------------------
# Metrics the code exports
# ---------------------------------------------------------------------------------------------------

_KINDS = {"Counter", "Gauge", "Histogram", "Summary"}


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str
    labels: frozenset[str]
    module: str


def _literal_strings(node: ast.AST | None) -> list[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts
    ):
        return [str(e.value) for e in node.elts if isinstance(e, ast.Constant)]
    return None


@cache
def exported_metrics() -> dict[str, Metric]:
    """Every prometheus_client metric constructed in the fleet's sources, by its base name."""
    found: dict[str, Metric] = {}
    roots = [ROOT / "shared" / "src", *sorted(ROOT.glob("services/*/src"))]
    for root in roots:
        for file in sorted(root.rglob("*.py")):
            tree = ast.parse(file.read_text(), str(file))
            imported = {
                alias.asname or alias.name
                for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module == "prometheus_client"
                for alias in node.names
                if alias.name in _KINDS
            }
            if not imported:
                continue
            module = ".".join(file.relative_to(root).with_suffix("").parts)
            for node in ast.walk(tree):
                if not (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in imported
                ):
                    continue
                if not (
                    node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    continue
                labels = _literal_strings(node.args[2] if len(node.args) > 2 else None)
                for kw in node.keywords:
                    if kw.arg == "labelnames":
                        labels = _literal_strings(kw.value)
                name = node.args[0].value
                kind = node.func.id
                if kind == "Counter":
                    name = name.removesuffix("_total")
                found[name] = Metric(name, kind, frozenset(labels or ()), module)
    return found


@cache
def series_names() -> dict[str, frozenset[str]]:
    """Every series name the fleet exposes (`_total`, `_bucket`, …) → the labels it carries."""
    names: dict[str, frozenset[str]] = dict(PROMETHEUS_SERIES)
    for metric in exported_metrics().values():
        labels = metric.labels | TARGET_LABELS
        suffixes = {
            "Counter": ("_total", "_created"),
            "Gauge": ("",),
            "Histogram": ("_bucket", "_sum", "_count", "_created"),
            "Summary": ("", "_sum", "_count", "_created"),
        }[metric.kind]
        for suffix in suffixes:
            names[metric.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
    return names


def test_the_metric_inventory_matches_the_live_registry() -> None:
    """The source scan above must agree with what prometheus_client really registers."""
    from prometheus_client import REGISTRY

    metrics = exported_metrics()
    assert {
        "pm_stream_group_lag",
        "pm_stream_claim_deleted",
        "pm_intent_moves",
        "pm_ledger_request_events",
    } <= set(metrics)
    for module in sorted({m.module for m in metrics.values()}):
        importlib.import_module(module)
    registered = {family.name: family for family in REGISTRY.collect()}
    for metric in metrics.values():
        family = registered.get(metric.name)
        assert family is not None, f"{metric.name} ({metric.module}) is not registered"
        kind = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary"}[
            metric.kind
        ]
        assert family.type == kind, (metric.name, family.type)


_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
    "inf", "nan",
}  # fmt: skip
_AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
    "quantile", "limitk", "limit_ratio",
}  # fmt: skip
_GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
_MATCHER = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"\s*,?')


@dataclass
class Query:
    selectors: list[tuple[str, dict[str, str]]]
    grouping: set[str]


def parse_promql(expr: str) -> Query:
    """The series selectors and grouping labels of a PromQL expression (enough to check names)."""
    expr = re.sub(r"\$__\w+|\$\{[^}]*\}", "5m", expr)
    query = Query([], set())
    i, n = 0, len(expr)

    def block(start: int, open_: str, close: str) -> int:
        depth, j = 0, start
        while j < n:
            c = expr[j]
            if c in "\"'`":
                j = expr.index(c, j + 1) if c == "`" else _string_end(expr, j)
            elif c == open_:
                depth += 1
            elif c == close:
                depth -= 1
                if depth == 0:
                    return j
            j += 1
        raise ValueError(f"unbalanced {open_} in {expr!r}")

    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c in "\"'":
            i = _string_end(expr, i) + 1
        elif c == "[":
            i = expr.index("]", i) + 1
        elif c == "{":  # a selector with no metric name
            end = block(i, "{", "}")
            query.selectors.append(("", _matchers(expr[i + 1 : end])))
            i = end + 1
        elif c.isalpha() or c in "_:":
            m = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*").match(expr, i)
            assert m is not None
            word, i = m.group(0), m.end()
            j = i
            while j < n and expr[j].isspace():
                j += 1
            if word.lower() in _GROUPING:
                if j < n and expr[j] == "(":
                    end = block(j, "(", ")")
                    query.grouping |= {w.strip() for w in expr[j + 1 : end].split(",") if w.strip()}
                    i = end + 1
            elif word.lower() in _KEYWORDS or word in _AGGREGATIONS:
                continue
            elif j < n and expr[j] == "(":
                continue  # a function or aggregation
            else:
                labels: dict[str, str] = {}
                if j < n and expr[j] == "{":
                    end = block(j, "{", "}")
                    labels = _matchers(expr[j + 1 : end])
                    i = end + 1
                query.selectors.append((word, labels))
        else:
            i += 1
    return query


def _string_end(expr: str, start: int) -> int:
    quote, j = expr[start], start + 1
    while expr[j] != quote:
        j += 2 if expr[j] == "\\" else 1
    return j


def _matchers(text: str) -> dict[str, str]:
    labels, pos = {}, 0
    while pos < len(text.strip()):
        m = _MATCHER.match(text, pos)
        if m is None:
            raise ValueError(f"cannot read label matchers {text!r}")
        labels[m.group(1)] = m.group(3)
        pos = m.end()
    return labels


def problems_in(expr: str) -> list[str]:
    """Metrics or labels an expression uses that the fleet does not export."""
    known = series_names()
    query = parse_promql(expr)
    problems = []
    used_labels: set[str] = set()
    if not query.selectors:
        problems.append(f"no metric in {expr!r}")
    for name, matchers in query.selectors:
        if name not in known:
            problems.append(f"unknown metric {name or '{…}'!r} in {expr!r}")
            continue
        used_labels |= known[name]
        for label in set(matchers) - known[name] - {"__name__"}:
            problems.append(f"{name} has no label {label!r} (it has {sorted(known[name])}) in {expr!r}")
    for label in query.grouping - used_labels - {"le"}:
        if used_labels:
            problems.append(f"grouping by {label!r}, which none of its metrics has, in {expr!r}")
    return problems


def unknown_jobs(expr: str) -> list[str]:
    """`job` values an expression selects that no Prometheus scrape job has."""
    jobs = {job["job_name"] for job in prometheus_config()["scrape_configs"]}
    unknown = []
    for _, matchers in parse_promql(expr).selectors:
        value = matchers.get("job")
        if value is not None and "$" not in value:
            unknown += [v for v in value.split("|") if v not in jobs]
    return unknown


def test_the_promql_reader_finds_metrics_and_labels() -> None:
    q = parse_promql(
        "sum by (stream, le) (rate(pm_stream_e2e_latency_seconds_bucket"
        '{stream=~"$stream", group!="x"}[$__rate_interval]))'
        ' / on() group_left sum(pm_stream_length) or vector(0) unless absent(up{job="a"} == 1)'
    )
    assert q.selectors == [
        ("pm_stream_e2e_latency_seconds_bucket", {"stream": "$stream", "group": "x"}),
        ("pm_stream_length", {}),
        ("up", {"job": "a"}),
    ]
    assert q.grouping == {"stream", "le"}
    assert problems_in("rate(pm_stream_lag_total[5m])")
    assert problems_in('pm_stream_group_lag{partition="0"}')
    assert problems_in("sum by (psp) (pm_stream_group_lag)")
    assert not problems_in("sum by (stream, group) (pm_stream_group_lag)")


# ---------------------------------------------------------------------------------------------------
# (c) The dashboard
# ---------------------------------------------------------------------------------------------------


def _panels(dashboard: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def test_the_dashboard_uses_only_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] and dashboard["title"]
    exprs = [t["expr"] for p in _panels(dashboard) for t in p.get("targets", [])]
    for var in dashboard.get("templating", {}).get("list", []):
        query = var.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text or "")
        if m:
            exprs.append(m.group(1))
            assert m.group(2) in series_names().get(m.group(1).split("{")[0], frozenset()), text
    assert len(exprs) >= 20
    problems = [p for e in exprs for p in problems_in(e)]
    problems += [f"no scrape job {job!r} in {e!r}" for e in exprs for job in unknown_jobs(e)]
    assert not problems, "\n".join(problems)
    # What the issue asks the dashboard to show.
    used = {name for e in exprs for name, _ in parse_promql(e).selectors}
    wanted = {
        "pm_stream_length", "pm_stream_group_lag", "pm_stream_group_pending",
        "pm_stream_oldest_pending_age_seconds",
        "pm_stream_dlq_length", "pm_intent_moves_total", "pm_stream_e2e_latency_seconds_bucket",
        "pm_ledger_request_events_bucket", "pm_psp_call_seconds_bucket", "pm_webhook_callbacks_total",
        "pm_reconciliation_alerts_total",
    }  # fmt: skip
    assert wanted <= used, f"missing from the dashboard: {sorted(wanted - used)}"
    ids = [p["id"] for p in _panels(dashboard)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


# ---------------------------------------------------------------------------------------------------
# (d) The alert rules
# ---------------------------------------------------------------------------------------------------


def _rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS_FILE.read_text())
    return [rule for group in data["groups"] for rule in group["rules"]]


_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def test_alert_rules_are_complete_and_use_exported_metrics() -> None:
    rules = _rules()
    names = [r.get("alert") for r in rules]
    assert len(names) == len(set(names)), "alert names must be unique"
    problems = []
    for rule in rules:
        name = rule.get("alert")
        if not name:
            problems.append(f"a rule with no alert name: {rule}")
            continue
        for field in ("expr", "for"):
            if field not in rule:
                problems.append(f"{name}: no {field}")
        if "for" in rule and not _DURATION.match(str(rule["for"])):
            problems.append(f"{name}: for {rule['for']!r} is not a duration")
        if rule.get("labels", {}).get("severity") not in ("critical", "warning", "info"):
            problems.append(f"{name}: labels.severity must be critical, warning or info")
        annotations = rule.get("annotations", {})
        for field in ("summary", "description"):
            if not str(annotations.get(field, "")).strip():
                problems.append(f"{name}: no annotations.{field}")
        problems += [f"{name}: {p}" for p in problems_in(str(rule.get("expr", "")))]
        problems += [f"{name}: no scrape job {job!r}" for job in unknown_jobs(str(rule.get("expr", "")))]
    assert not problems, "\n".join(problems)


def test_alert_rules_cover_what_the_operators_need() -> None:
    used = {name for rule in _rules() for name, _ in parse_promql(rule["expr"]).selectors}
    for metric, why in {
        "pm_stream_dlq_length": "DLQ growing",
        "pm_stream_claim_deleted_total": "entries lost to trimming",
        "pm_stream_oldest_pending_age_seconds": "lag time over SLO",
        "pm_stream_e2e_latency_seconds_bucket": "lag time over SLO",
        "pm_intent_moves_total": "intents stuck past their timeout",
        "pm_intents_resume_given_up_total": "intents stuck past their timeout",
        "pm_ledger_writer_active": "ledger-writer without a lease holder",
        "pm_reconciliation_alerts_total": "reconciliation alerts raised",
        "pm_stream_dlq_total": "PSP results dead-lettered",
    }.items():
        assert metric in used, f"no alert rule uses {metric} ({why})"


PROMTOOL = shutil.which("promtool")


@pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian: `apt-get install prometheus` ships it; or a Prometheus "
    "release's promtool binary on PATH)",
)
def test_promtool_accepts_the_rules_and_the_config() -> None:
    assert PROMTOOL is not None
    for args in (["check", "rules", str(ALERTS_FILE)], ["check", "config", str(PROMETHEUS_CONFIG)]):
        done = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"promtool {' '.join(args)}:\n{done.stdout}{done.stderr}"


def test_every_file_the_compose_file_mounts_exists() -> None:
    for name, svc in services().items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).exists(), f"{name} mounts missing {source}"
