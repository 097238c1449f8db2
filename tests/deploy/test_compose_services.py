"""What each service of compose/docker-compose.yml runs, and how the services reach each other.

Every member of the roster (pm_shared.fleet) runs, on its port, and no other PM process runs but the
migrate job; every `PM_*` variable a PM service gets is one its settings loader reads (an unknown one
would stop it at start); the PSP sandboxes call the gateway back with the secrets it checks and the
adapters reach their sandboxes; Redis keeps its data; TigerBeetle runs the client's version and the
ledger URL reaches it.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from pm_shared import fleet
from pm_shared.ledger.urls import TigerBeetleUrl, parse
from pm_shared.settings import SettingsError

if TYPE_CHECKING:
    from tests.deploy.conftest import Compose

ROOT = Path(__file__).resolve().parents[2]


def test_every_member_of_the_roster_runs_and_nothing_else(compose: Compose) -> None:
    runs: dict[str, list[str]] = {}
    for name, process in compose.pm_services().items():
        runs.setdefault(process.member.name if process.member else "pm", []).append(name)
    for member in fleet.FLEET:
        # A single-active member runs twice: the lease holder and a standby ready to take over.
        expected = [member.name, f"{member.name}-standby"] if member.single_active else [member.name]
        assert sorted(runs.pop(member.name, [])) == expected, f"{member.name} runs as {expected}"
    assert runs == {"pm": ["migrate"]}, f"PM processes outside the roster: {runs}"


def test_every_member_listens_on_its_port_from_the_roster(compose: Compose) -> None:
    for name, process in compose.pm_services().items():
        if process.member is None:
            continue
        assert compose.port_of(name) == process.member.port, name
        assert compose.environment(name)[process.member.port_variable] == str(process.member.port)
        health = compose.health_url(name)
        # A standby is alive but never ready: a single-active member is checked on /healthz.
        if process.member.single_active:
            assert health is not None and health[1] == "/healthz", f"{name}: {health}"


def test_every_pm_variable_is_read_by_the_settings_of_its_service(compose: Compose) -> None:
    found = compose.pm_services()
    problems = []
    for name, process in found.items():
        env = compose.environment(name)
        try:
            settings = process.load(env)
        except SettingsError as exc:
            problems.append(f"{name}: its settings loader refuses the environment: {exc}")
            continue
        unread = process.unread_variables(env)
        if unread:
            problems.append(f"{name}: variables its settings never read: {unread}")
        if (
            "host" in process.settings_type.__struct_fields__
            and compose.setting(settings, "host") != "0.0.0.0"
        ):
            problems.append(
                f"{name}: listens on {compose.setting(settings, 'host')}, unreachable from other containers"
            )
        if "port" in process.settings_type.__struct_fields__:
            health = compose.health_url(name)
            if health is None:
                problems.append(f"{name}: its health check calls no http://127.0.0.1:<port>/… URL")
            else:
                port, path = health
                if port != compose.setting(settings, "port"):
                    problems.append(
                        f"{name}: health check on port {port}, service on {compose.setting(settings, 'port')}"
                    )
                if path not in ("/healthz", "/readyz"):
                    problems.append(f"{name}: health check on {path}, not /healthz or /readyz")
    assert not problems, "\n".join(problems)


def test_a_misspelt_variable_is_caught(compose: Compose) -> None:
    # The check above would be worthless if an unknown variable slipped through it.
    orchestrator, gateway = fleet.ORCHESTRATOR, fleet.GATEWAY
    process = compose.pm_services()[orchestrator.name]
    env = {**compose.environment(orchestrator.name), f"PM_{orchestrator.prefix}RESUME_AFTER": "30"}
    with pytest.raises(SettingsError):
        process.load(env)
    assert process.unread_variables({gateway.port_variable: "8080"}) == [gateway.port_variable]


PSPS = (("ipps", fleet.ADAPTER_IPPS, fleet.IPPS_SANDBOX), ("qp", fleet.ADAPTER_QP, fleet.QP_SANDBOX))
"""Each PSP: its name in the gateway's callback path, its adapter and the sandbox standing in for it."""


def _secret(compose: Compose, member: fleet.Member, field: str) -> str:
    """The value of the member's own variable `PM_<prefix><field>` in the compose file."""
    variable = f"PM_{member.prefix}{field}"
    value = compose.environment(member.name).get(variable)
    assert value, f"{member.name} gets no {variable}"
    return value


def _gateway_routes(compose: Compose) -> set[str]:
    from pm_gateway.app import create_app
    from pm_gateway.settings import load

    app = create_app(load(compose.environment(fleet.GATEWAY.name)))

    def walk(routes: list[Any], prefix: str = "") -> Iterator[str]:
        for route in routes:
            path = prefix + getattr(route, "path", "")
            children = getattr(route, "routes", None)
            if children:
                yield from walk(list(children), path)
            else:
                yield path

    return set(walk(list(app.routes)))


def test_sandboxes_call_the_gateway_back_with_the_secrets_it_checks(compose: Compose) -> None:
    gateway = fleet.GATEWAY
    gateway_port = compose.port_of(gateway.name)
    routes = _gateway_routes(compose)
    for psp, _, sandbox in PSPS:
        url = urlsplit(_secret(compose, sandbox, "CALLBACK_URL"))
        assert (url.hostname, url.port) == (gateway.name, gateway_port), (
            f"{sandbox.name} calls back {url.geturl()}"
        )
        assert url.path == f"/v1/webhooks/{psp}" and url.path in routes
        # The gateway checks the socket peer against its allowlist: the sandbox's fixed address.
        address = compose.services[sandbox.name]["networks"]["pm"]["ipv4_address"]
        allowlist = _secret(compose, gateway, f"{psp.upper()}_CALLBACK_ALLOWLIST")
        nets = [ipaddress.ip_network(part.strip(), strict=False) for part in allowlist.split(",")]
        assert any(ipaddress.ip_address(address) in net for net in nets), (
            f"{sandbox.name} {address} not in {nets}"
        )
    assert _secret(compose, fleet.IPPS_SANDBOX, "CALLBACK_SECRET") == _secret(
        compose, gateway, "IPPS_CALLBACK_SECRET"
    )
    qp = _secret(compose, fleet.QP_SANDBOX, "SECRET")
    assert (
        qp
        == _secret(compose, gateway, "QP_CALLBACK_SECRET")
        == _secret(compose, fleet.ADAPTER_QP, "QP_SECRET")
    )
    assert _secret(compose, fleet.IPPS_SANDBOX, "AUTH_SECRET") == _secret(
        compose, fleet.ADAPTER_IPPS, "IPPS_AUTH_SECRET"
    )


def test_adapters_talk_to_their_sandboxes(compose: Compose) -> None:
    for psp, adapter, sandbox in PSPS:
        url = urlsplit(_secret(compose, adapter, f"{psp.upper()}_URL"))
        sandbox_port = compose.port_of(sandbox.name)
        assert (url.hostname, url.port) == (sandbox.name, sandbox_port), f"{adapter.name}: {url.geturl()}"
        deps = compose.services[adapter.name].get("depends_on") or {}
        assert deps.get(sandbox.name, {}).get("condition") == "service_healthy"


def test_redis_keeps_an_append_only_file_and_never_evicts(compose: Compose) -> None:
    redis = compose.services["redis"]
    args = compose.command(redis)
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


def test_tigerbeetle_is_the_official_image_at_the_client_version(compose: Compose) -> None:
    expected = f"ghcr.io/tigerbeetle/tigerbeetle:{_locked_version('tigerbeetle')}"
    tb_services = {n: s for n, s in compose.services.items() if "tigerbeetle" in str(s.get("image", ""))}
    assert set(tb_services) == {"tigerbeetle", "tigerbeetle-format"}
    for name, svc in tb_services.items():
        assert svc["image"] == expected, f"{name}: {svc['image']} (the lock has {expected})"
    fmt, start = (
        " ".join(compose.command(tb_services["tigerbeetle-format"])),
        compose.command(tb_services["tigerbeetle"]),
    )
    assert start[0] == "start" and "format" in fmt
    data_file = start[-1]
    assert data_file in fmt, "format and start must use the same data file"
    assert tb_services["tigerbeetle"]["volumes"] == tb_services["tigerbeetle-format"]["volumes"]
    assert "--development" not in fmt and "--development" not in start, "the writer needs 1 MiB requests"
    deps = tb_services["tigerbeetle"]["depends_on"]
    assert deps["tigerbeetle-format"]["condition"] == "service_completed_successfully"


def test_the_ledger_url_reaches_the_tigerbeetle_service(compose: Compose) -> None:
    import tigerbeetle

    tb = compose.services["tigerbeetle"]
    listen = next(a.split("=", 1)[1] for a in compose.command(tb) if a.startswith("--addresses="))
    port = int(listen.rsplit(":", 1)[1])
    address = tb["networks"]["pm"]["ipv4_address"]
    # Its health check looks for a socket listening on that port in /proc/net/tcp (hex, upper case).
    probe = re.search(r":([0-9A-F]{4}) 00000000:0000 0A", " ".join(tb["healthcheck"]["test"]))
    assert probe is not None and int(probe[1], 16) == port, tb["healthcheck"]["test"]
    subnet = ipaddress.ip_network(compose.file["networks"]["pm"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in subnet
    cluster = re.search(r"--cluster=(\d+)", " ".join(compose.command(compose.services["tigerbeetle-format"])))
    assert cluster is not None
    for name in compose.pm_services():
        url = compose.environment(name).get("PM_LEDGER_URL")
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
