"""PgBouncer in the deployment pack: every PM service reaches PostgreSQL through it, in transaction mode.

In compose/docker-compose.yml and compose/k8s alike: each service's PM_DATABASE_URL names PgBouncer's
address and port and ends in `?pool_mode=transaction`; the migrations (compose's migrate job, the
Kubernetes Job's `pm migrate`) go to PostgreSQL directly; PgBouncer's own config pools per
transaction and points at that same PostgreSQL and database, and its user list holds the user the
URLs log in as. With pgbouncer installed, the real program (Debian's 1.18, the one the images carry)
starts on both config files, made local, without a complaint.
"""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

import pytest

from pm_shared import fleet
from pm_shared.db import Endpoint
from pm_tools.processes import free_port

if TYPE_CHECKING:
    from tests.deploy.conftest import Compose, Manifests

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_INI = ROOT / "compose" / "pgbouncer" / "pgbouncer.ini"
PGBOUNCER = "pgbouncer"
NAMESPACE = "pm"
CONFIG_MAP = "pm-pgbouncer"


def _ini(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, comment_prefixes=(";", "#"))
    parser.read_string(text)
    return parser


def _upstream(ini: configparser.ConfigParser, database: str) -> dict[str, str]:
    """The `[databases]` entry of `database`: its libpq-style `key=value` pairs."""
    assert ini.has_option("databases", database), f"PgBouncer serves no database {database!r}"
    return dict(pair.split("=", 1) for pair in ini.get("databases", database).split())


def _check_pgbouncer(ini: configparser.ConfigParser, pooled: SplitResult, direct: SplitResult) -> None:
    """PgBouncer pools per transaction on the port the services use, in front of the migrations' server."""
    settings = ini["pgbouncer"]
    assert settings.get("pool_mode") == "transaction"
    assert int(settings.get("listen_port", "6432")) == pooled.port
    database = pooled.path.lstrip("/")
    upstream = _upstream(ini, database)
    assert (upstream["host"], int(upstream.get("port", "5432"))) == (direct.hostname, direct.port or 5432)
    assert upstream.get("dbname", database) == direct.path.lstrip("/")
    # Nothing PgBouncer would pass to PostgreSQL unchecked: PM sends no startup parameter it refuses.
    assert not settings.get("ignore_startup_parameters"), "PM needs no ignored startup parameter"


def _check_urls(pooled_url: str, direct_url: str) -> tuple[SplitResult, SplitResult]:
    pooled, direct = urlsplit(pooled_url), urlsplit(direct_url)
    assert Endpoint.of(pooled_url).transaction_pooled, f"not through a transaction pooler: {pooled_url}"
    assert not Endpoint.of(direct_url).transaction_pooled, f"migrations through a pooler: {direct_url}"
    assert (pooled.username, pooled.password) == (direct.username, direct.password)
    return pooled, direct


def _users(text: str) -> dict[str, str]:
    """A PgBouncer user list: `"user" "password"` per line."""
    out = {}
    for line in text.splitlines():
        if line.strip():
            user, password = (part.strip('"') for part in line.split(" ", 1))
            out[user] = password
    return out


# -- docker compose ----------------------------------------------------------------------------------


def test_compose_services_go_through_pgbouncer_and_migrations_go_direct(compose: Compose) -> None:
    direct_url = compose.environment("migrate")["PM_DATABASE_URL"]
    urls = {
        name: compose.environment(name)["PM_DATABASE_URL"]
        for name, process in compose.pm_services().items()
        if process.member is not None and process.member.kind == "service"
    }
    assert set(urls) >= {m.name for m in fleet.SERVICES}
    ini = _ini(COMPOSE_INI.read_text())
    for name, url in urls.items():
        pooled, direct = _check_urls(url, direct_url)
        assert pooled.hostname == PGBOUNCER, f"{name}: {url}"
        assert direct.hostname == "postgres", direct_url
        _check_pgbouncer(ini, pooled, direct)
        deps = compose.services[name].get("depends_on") or {}
        assert deps.get(PGBOUNCER, {}).get("condition") == "service_healthy", name
    service = compose.services[PGBOUNCER]
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    targets = {c["target"]: c["source"] for c in service["configs"]}
    configs = compose.file["configs"]
    assert (
        ROOT / "compose" / configs[targets["/etc/pgbouncer/pgbouncer.ini"]]["file"]
    ).resolve() == COMPOSE_INI
    users = _users(configs[targets[ini["pgbouncer"]["auth_file"]]]["content"])
    assert users == {pooled.username: pooled.password}, "the user list must hold the URLs' user"


# -- Kubernetes --------------------------------------------------------------------------------------


def test_k8s_services_go_through_pgbouncer_and_the_migration_job_goes_direct(manifests: Manifests) -> None:
    job = manifests.one("Job", "pm-migrate")["spec"]["template"]["spec"]
    (migrate,) = [c for c in job["initContainers"] + job["containers"] if c["command"] == ["pm", "migrate"]]
    direct_url = manifests.container_env(migrate)["PM_DATABASE_URL"]
    ini = _ini(manifests.one("ConfigMap", CONFIG_MAP)["data"]["pgbouncer.ini"])
    service = manifests.one("Service", PGBOUNCER)
    deployment = manifests.one("Deployment", PGBOUNCER)
    container = manifests.container(deployment)
    (port,) = service["spec"]["ports"]
    assert manifests.selects({"matchLabels": service["spec"]["selector"]}, manifests.pod_labels(deployment))
    assert manifests.port(container, port["targetPort"]) == int(ini["pgbouncer"]["listen_port"])
    for member in fleet.SERVICES:
        url = manifests.service_env(member.name)["PM_DATABASE_URL"]
        pooled, direct = _check_urls(url, direct_url)
        assert pooled.hostname in (PGBOUNCER, f"{PGBOUNCER}.{NAMESPACE}.svc.cluster.local"), url
        assert pooled.port == port["port"], url
        _check_pgbouncer(ini, pooled, direct)
    # What the pod runs: the ConfigMap's file and the Secret's user list, where the config says.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    (config_path,) = container["args"]
    config_volume = next(
        n for n, v in volumes.items() if v.get("configMap", {}).get("name") == "pm-pgbouncer"
    )
    assert config_path == f"{mounts[config_volume]}/pgbouncer.ini"
    auth_file = Path(ini["pgbouncer"]["auth_file"])
    users_volume = next(n for n, v in volumes.items() if "secret" in v)
    assert str(auth_file.parent) == mounts[users_volume]
    secret = manifests.secret_data(manifests.one("Secret", volumes[users_volume]["secret"]["secretName"]))
    assert set(_users(secret[auth_file.name])) == {pooled.username}


# -- the real PgBouncer ------------------------------------------------------------------------------


def _local(text: str, port: int, auth_file: Path) -> str:
    """A deployment's pgbouncer.ini made runnable here: loopback, a free port, a local user list."""
    ini = _ini(text)
    ini["pgbouncer"]["listen_addr"] = "127.0.0.1"
    ini["pgbouncer"]["listen_port"] = str(port)
    ini["pgbouncer"]["auth_file"] = str(auth_file)
    lines = []
    for section in ini.sections():
        lines.append(f"[{section}]")
        lines += [f"{key} = {value}" for key, value in ini[section].items()]
    return "\n".join(lines) + "\n"


@pytest.mark.skipif(
    shutil.which("pgbouncer") is None and not Path("/usr/sbin/pgbouncer").exists(),
    reason="pgbouncer is not installed (Debian: apt-get install pgbouncer); .ci/run installs it",
)
@pytest.mark.parametrize("which", ["compose", "k8s"])
def test_pgbouncer_starts_on_the_deployments_config(which: str, manifests: Manifests, tmp_path: Path) -> None:
    text = (
        COMPOSE_INI.read_text()
        if which == "compose"
        else manifests.one("ConfigMap", CONFIG_MAP)["data"]["pgbouncer.ini"]
    )
    users = tmp_path / "userlist.txt"
    users.write_text('"pm" "pm"\n')
    port = free_port()
    ini = tmp_path / "pgbouncer.ini"
    ini.write_text(_local(text, port, users))
    program = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
    as_nobody = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    log = tmp_path / "pgbouncer.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [program, *as_nobody, str(ini)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, f"pgbouncer exited with {proc.returncode}:\n{log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"not listening after 10 s:\n{log.read_text()}"
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(10)
    complaints = [line for line in log.read_text().splitlines() if " WARNING " in line or " ERROR " in line]
    assert not complaints, complaints
