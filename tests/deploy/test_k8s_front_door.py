"""The front door in compose/k8s (front-door.yaml): nginx before the gateway for end users.

Its nginx config is pm_tools.frontdoor's, like docker compose's, generated into a ConfigMap by the
kustomization; the pod's entrypoint (the official nginx image's) renders it with envsubst, so the
proxy secret comes from the Secret the gateway reads, through the environment, and never sits in a
ConfigMap; the Auth Center's verify URL is configuration (config.yaml). Then what nginx does with
it: `/v1/me/` asks the Auth Center (`auth_request`), the user id it answers overwrites the client's
`X-PM-User`, the secret is added; nowhere else does a client's identity header pass. With nginx
installed (Debian: `apt-get install nginx`), the committed config, made local (addresses, ports and
paths), passes `nginx -t` and serves those promises to stub Auth Center and gateway servers.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from pm_shared.settings import SettingsError
from pm_tools import frontdoor
from pm_tools.processes import free_port

if TYPE_CHECKING:
    from tests.deploy.conftest import Manifests, Obj

K8S = Path(__file__).resolve().parents[2] / "compose" / "k8s"
TEMPLATE = K8S / "front-door" / "nginx.conf.template"
FRONT_DOOR = "front-door"
CONFIG_MAP = "pm-front-door-nginx"
"""The generated ConfigMap of TEMPLATE (kustomization.yaml; its built name carries a hash)."""
TEMPLATE_DIR = "/etc/nginx/templates"
"""Where the image's entrypoint looks for templates (NGINX_ENVSUBST_TEMPLATE_DIR's default)."""
IMAGE_TAG = re.compile(r"^\d+\.\d+\.\d+-bookworm$")
"""The official image's Debian tags, pinned to a release (not `latest`, `stable`, `1.27`)."""
VARIABLE = re.compile(r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))")
"""What envsubst substitutes, when the name is in its list: `${NAME}` and `$NAME`."""
SECRET_HEADER = "X-PM-Proxy-Secret"
USER_HEADER = "X-PM-User"


def _deployment(manifests: Manifests) -> Obj:
    return manifests.one("Deployment", FRONT_DOOR)


def _env(container: Obj) -> dict[str, Obj]:
    """Each variable of the container's `env` by name."""
    return {v["name"]: v for v in container["env"]}


def _envsubst(text: str, env: Mapping[str, str]) -> str:
    """envsubst with an explicit list, as the image's entrypoint runs it: only the names in `env`."""

    def one(match: re.Match[str]) -> str:
        name = match["braced"] or match["bare"]
        return env.get(name, match[0])

    return VARIABLE.sub(one, text)


def _parse(body: str) -> tuple[list[str], list[tuple[str, str]]]:
    """A block's own directives (`name args`) and the blocks directly in it (`header`, body), in
    order; comments dropped, `${VAR}` kept (its braces are not nginx's)."""
    flat = VARIABLE.sub(lambda m: f"@{m['braced']}@" if m["braced"] else m[0], re.sub(r"#[^\n]*", "", body))

    def unflat(text: str) -> str:
        return re.sub(r"@([A-Za-z_][A-Za-z0-9_]*)@", r"${\1}", text)

    directives: list[str] = []
    blocks: list[tuple[str, str]] = []
    depth, statement, opened, header = 0, 0, 0, ""
    for i, char in enumerate(flat):
        if char == "{":
            if depth == 0:
                header, opened = " ".join(flat[statement:i].split()), i + 1
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                blocks.append((unflat(header), unflat(flat[opened:i])))
                statement = i + 1
        elif char == ";" and depth == 0:
            directives.append(unflat(" ".join(flat[statement:i].split())))
            statement = i + 1
    assert depth == 0 and not flat[statement:].strip(), "unbalanced braces or a statement without `;`"
    return directives, blocks


def _directives(body: str) -> list[str]:
    return _parse(body)[0]


def _block(body: str, header: str) -> str:
    """The body of the one block `header { … }` directly in `body`."""
    found = [inner for head, inner in _parse(body)[1] if head == header]
    assert len(found) == 1, f"expected one `{header} {{`, found {len(found)}"
    return found[0]


def _servers(text: str) -> dict[int, str]:
    """Each `server { … }` of the http context by the port it listens on."""
    found: dict[int, str] = {}
    for head, body in _parse(_block(text, "http"))[1]:
        if head.startswith("upstream "):
            continue
        assert head == "server", head
        (listen,) = [d for d in _directives(body) if d.startswith("listen ")]
        found[int(listen.split()[1].rsplit(":", 1)[-1])] = body
    return found


def _locations(server: str) -> dict[str, str]:
    """Each location of a server by its match (`= /_pm_auth`, `/v1/me/`)."""
    return {head.removeprefix("location "): body for head, body in _parse(server)[1]}


# ------------------------------------------------------------------------------------- the config itself


def test_the_config_is_what_frontdoor_renders_for_kubernetes(manifests: Manifests) -> None:
    assert TEMPLATE.read_text() == frontdoor.kubernetes_template(), (
        "regenerate it: python -m pm_tools.frontdoor kubernetes > compose/k8s/front-door/nginx.conf.template"
    )
    assert manifests.one("ConfigMap", CONFIG_MAP)["data"] == {TEMPLATE.name: TEMPLATE.read_text()}
    # The same server as docker compose's, but for what Kubernetes gives it: the verify URL whole.
    compose = _block(frontdoor.server_block(frontdoor.COMPOSE), "server")
    kubernetes = _block(frontdoor.server_block(frontdoor.KUBERNETES), "server")
    assert _locations(kubernetes).keys() == _locations(compose).keys()


def test_frontdoor_prints_each_committed_rendering(capsys: pytest.CaptureFixture[str]) -> None:
    compose = K8S.parent / "nginx" / "pm.conf.template"
    for target, committed in (("kubernetes", TEMPLATE), ("compose", compose)):
        assert frontdoor.main([target]) == 0
        assert capsys.readouterr().out == committed.read_text(), target
    assert frontdoor.main(["helm"]) == 2


def test_end_user_routes_ask_the_auth_center_and_overwrite_the_identity(manifests: Manifests) -> None:
    container = manifests.container(_deployment(manifests))
    (http_port,) = [p["containerPort"] for p in container["ports"] if p["name"] == "http"]
    server = _servers(TEMPLATE.read_text())[http_port]
    # Whatever a client sent in the identity headers is dropped on every path...
    assert {f'proxy_set_header {USER_HEADER} ""', f'proxy_set_header {SECRET_HEADER} ""'} <= set(
        _directives(server)
    )
    locations = _locations(server)
    # ... and a location setting headers of its own inherits none of the server's (nginx's rule), so
    # each such location sets both again.
    for match, body in locations.items():
        names = {d.split()[1].lower() for d in _directives(body) if d.startswith("proxy_set_header ")}
        if names:
            assert {USER_HEADER.lower(), SECRET_HEADER.lower()} <= names, f"location {match}"

    me = _directives(locations["/v1/me/"])
    assert "auth_request /_pm_auth" in me
    assert "auth_request_set $pm_user $upstream_http_x_user_id" in me
    assert f"proxy_set_header {USER_HEADER} $pm_user" in me  # the Auth Center's answer, not the client's
    assert f'proxy_set_header {SECRET_HEADER} "${{PM_PROXY_SECRET}}"' in me  # from the environment
    auth = _directives(locations["= /_pm_auth"])
    assert "internal" in auth
    assert "proxy_pass ${PM_AUTH_CENTER_VERIFY_URL}" in auth
    assert "proxy_pass_request_body off" in auth
    assert _directives(locations["/v1/webhooks/"]) == ["return 404"]  # PSPs call the gateway itself


def test_the_template_uses_exactly_the_variables_the_pod_is_given(manifests: Manifests) -> None:
    text = TEMPLATE.read_text()
    container = manifests.container(_deployment(manifests))
    assert "envFrom" not in container, "the front door's variables are named one by one"
    env = _env(container)
    pattern = env["NGINX_ENVSUBST_FILTER"]["value"]
    substituted = {name for name in env if re.search(pattern, name)}
    used = {m["braced"] or m["bare"] for m in VARIABLE.finditer(text)}
    # Every ${VAR} the template names is given to the pod and passes the filter; nginx's own
    # variables ($pm_user, $http_authorization…) are not given, so envsubst leaves them alone.
    assert {name for name in used if name.isupper()} == substituted
    assert not {name for name in used if not name.isupper()} & set(env)
    assert not [m[0] for m in VARIABLE.finditer(text) if m["bare"] and m["bare"].isupper()], (
        "write ${VAR}: a bare $VAR is easy to misread as one of nginx's"
    )


# -------------------------------------------------------------------------------- secret and configuration


def test_the_proxy_secret_comes_from_the_secret_key_the_gateway_reads(manifests: Manifests) -> None:
    door = _env(manifests.container(_deployment(manifests)))["PM_PROXY_SECRET"]
    assert set(door) == {"name", "valueFrom"}, "from a Secret, never a literal value"
    gateway = _env(manifests.container(manifests.one("Deployment", "gateway")))["PM_GATEWAY_PROXY_SECRET"]
    assert door["valueFrom"] == gateway["valueFrom"]
    assert set(door["valueFrom"]) == {"secretKeyRef"}
    secret = manifests.container_env(manifests.container(_deployment(manifests)))["PM_PROXY_SECRET"]
    gateway_env = manifests.container_env(manifests.container(manifests.one("Deployment", "gateway")))
    assert secret and gateway_env["PM_GATEWAY_PROXY_SECRET"] == secret
    for config_map in manifests.all("ConfigMap"):
        assert not [k for k in config_map["data"] if "SECRET" in k], manifests.id(config_map)


def test_the_verify_url_is_configuration_kept_from_the_services(manifests: Manifests) -> None:
    var = _env(manifests.container(_deployment(manifests)))["PM_AUTH_CENTER_VERIFY_URL"]
    ref = var["valueFrom"]["configMapKeyRef"]
    in_config = [d for d in yaml.safe_load_all((K8S / "config.yaml").read_text()) if d]
    assert [d for d in in_config if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"]]
    url = urlsplit(manifests.one("ConfigMap", ref["name"])["data"][ref["key"]])
    assert url.scheme in ("http", "https") and url.path
    # The committed placeholder never resolves (RFC 2606), so a front door deployed with it stops.
    assert url.hostname is not None and url.hostname.endswith(".invalid")
    # Not in pm-config, which every service reads: a PM_* variable they do not know stops them.
    assert ref["key"] not in manifests.one("ConfigMap", "pm-config")["data"]
    env = manifests.service_env("gateway") | {ref["key"]: url.geturl()}
    with pytest.raises(SettingsError):
        manifests.LOADERS["gateway"](env)


# ------------------------------------------------------------------------------------------ the pod


def test_the_image_is_the_official_debian_nginx_pinned(manifests: Manifests) -> None:
    container = manifests.container(_deployment(manifests))
    name, tag = str(container["image"]).rsplit(":", 1)
    assert name == "nginx" and IMAGE_TAG.match(tag), container["image"]
    (entry,) = [i for i in manifests.kustomization["images"] if i["name"] == name]
    assert entry == {"name": name, "newTag": tag}, "kustomization.yaml pins the same tag"


def test_the_pod_renders_the_template_into_its_emptydir_and_runs_that(manifests: Manifests) -> None:
    deployment = _deployment(manifests)
    pod = deployment["spec"]["template"]["spec"]
    container = manifests.container(deployment)
    assert "command" not in container, "the image's entrypoint renders the templates"
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    assert mounts[TEMPLATE_DIR]["configMap"]["name"] == CONFIG_MAP
    env = _env(container)
    assert "NGINX_ENVSUBST_TEMPLATE_DIR" not in env
    runtime = str(frontdoor.KUBERNETES_RUNTIME_DIR)
    assert env["NGINX_ENVSUBST_OUTPUT_DIR"]["value"] == runtime
    assert "emptyDir" in mounts[runtime], "the root file system is read-only: rendered config, pid, temp"
    assert mounts[runtime]["emptyDir"].get("medium") == "Memory", "the rendered config holds the secret"
    assert container["args"] == ["nginx", "-c", f"{runtime}/nginx.conf"]
    own = _directives(TEMPLATE.read_text())
    http = _directives(_block(TEMPLATE.read_text(), "http"))
    assert f"pid {runtime}/nginx.pid" in own and "daemon off" in own
    assert not [d for d in own if d.startswith("user ")], "no user switch: the pod runs unprivileged"
    paths = [d for d in http if d.split()[0].endswith("_temp_path")]
    assert len(paths) == 5 and all(d.split()[1].startswith(f"{runtime}/") for d in paths)
    assert pod["securityContext"]["runAsUser"] != 0


def test_probes_ask_nginx_itself_on_a_port_no_service_exposes(manifests: Manifests) -> None:
    container = manifests.container(_deployment(manifests))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(frontdoor.KUBERNETES.listen), "probe": frontdoor.KUBERNETES_PROBE_PORT}
    servers = _servers(TEMPLATE.read_text())
    assert set(servers) == set(ports.values())
    health = _directives(_locations(servers[ports["probe"]])["= /healthz"])
    assert any(d.startswith("return 200") for d in health)
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "probe"}, probe
    (service_port,) = manifests.one("Service", FRONT_DOOR)["spec"]["ports"]
    assert service_port["targetPort"] == "http"
    assert manifests.selects(
        {"matchLabels": manifests.one("Service", FRONT_DOOR)["spec"]["selector"]},
        manifests.pod_labels(_deployment(manifests)),
    )


def test_the_front_door_starts_after_the_gateway_service(manifests: Manifests) -> None:
    # nginx resolves `gateway` when it starts: Argo CD syncs it a wave after the gateway's Service.
    waves = {
        manifests.id(o): int(o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))
        for o in (_deployment(manifests), manifests.one("Service", "gateway"))
    }
    assert waves[f"Deployment/{FRONT_DOOR}"] > waves["Service/gateway"]
    assert urlsplit(frontdoor.KUBERNETES.gateway_url).hostname == "gateway"
    (port,) = manifests.one("Service", "gateway")["spec"]["ports"]
    assert urlsplit(frontdoor.KUBERNETES.gateway_url).port == port["port"]


# ---------------------------------------------------------------------------- nginx, when it is installed

needs_nginx = pytest.mark.skipif(frontdoor.installed() is None, reason=f"no nginx: {frontdoor.INSTALL_HINT}")
needs_ca_bundle = pytest.mark.skipif(
    not Path(frontdoor.KUBERNETES_CA_BUNDLE).exists(), reason="no CA bundle (Debian: ca-certificates)"
)
SECRET = "proxy-secret-of-the-test"
TOKEN = "good-token"
USER = "u-1001"


@dataclass
class Local:
    """The committed config made local: loopback addresses, free ports, files under a temp dir."""

    conf: Path
    prefix: Path
    port: int
    probe_port: int


def _localize(tmp: Path, *, auth_url: str, gateway_url: str) -> Local:
    text = _envsubst(TEMPLATE.read_text(), {"PM_AUTH_CENTER_VERIFY_URL": auth_url, "PM_PROXY_SECRET": SECRET})
    local = Local(tmp / "nginx.conf", tmp, free_port(), free_port())
    for old, new in [
        # The gateway is named once, as the upstream's server.
        (
            f"server {frontdoor.KUBERNETES.gateway_url.removeprefix('http://')};",
            f"server {gateway_url.removeprefix('http://')};",
        ),
        (f"listen {frontdoor.KUBERNETES.listen};", f"listen 127.0.0.1:{local.port};"),
        (f"listen {frontdoor.KUBERNETES_PROBE_PORT};", f"listen 127.0.0.1:{local.probe_port};"),
        (f" {frontdoor.KUBERNETES_RUNTIME_DIR}/", f" {tmp}/"),
    ]:
        assert old in text, f"nothing to make local: {old!r}"  # the test would check nothing
        text = text.replace(old, new)
    local.conf.write_text(text)
    return local


def _nginx(local: Local, *extra: str) -> list[str]:
    binary = frontdoor.installed()
    assert binary is not None
    return [binary, "-e", "stderr", "-p", str(local.prefix), "-c", str(local.conf), *extra]


@needs_nginx
@needs_ca_bundle
def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    local = _localize(tmp_path, auth_url="https://127.0.0.1:9/verify", gateway_url="http://127.0.0.1:9")
    checked = subprocess.run(_nginx(local, "-t"), capture_output=True, text=True, timeout=30)
    assert checked.returncode == 0, checked.stderr


@dataclass
class Stub:
    """A loopback HTTP server recording what it was sent."""

    url: str
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    """(path, headers with lower-case names) of each request."""


def _handler(stub: Stub, role: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            stub.seen.append((self.path, headers))
            if role == "auth":
                ok = headers.get("authorization") == f"Bearer {TOKEN}"
                self.send_response(204 if ok else 401)
                if ok:
                    self.send_header("X-User-Id", USER)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = json.dumps({"path": self.path}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._answer()

        def do_POST(self) -> None:
            self._answer()

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's signature)
            pass

    return Handler


@pytest.fixture
def stubs() -> Iterator[tuple[Stub, Stub]]:
    """The Auth Center (`/verify`: TOKEN → 204 with USER, else 401) and the gateway (200, always)."""
    servers: list[ThreadingHTTPServer] = []
    made: list[Stub] = []
    for role in ("auth", "gateway"):
        stub = Stub("")
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(stub, role))
        stub.url = f"http://127.0.0.1:{server.server_address[1]}"
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        made.append(stub)
    yield made[0], made[1]
    for server in servers:
        server.shutdown()
        server.server_close()


@needs_nginx
@needs_ca_bundle
def test_nginx_serves_the_config_as_promised(tmp_path: Path, stubs: tuple[Stub, Stub]) -> None:
    auth, gateway = stubs
    local = _localize(tmp_path, auth_url=f"{auth.url}/verify", gateway_url=gateway.url)
    with (tmp_path / "nginx.stderr").open("wb") as err:
        nginx = subprocess.Popen(_nginx(local), stdout=subprocess.DEVNULL, stderr=err)
    try:
        with httpx.Client(timeout=10) as http:
            probe = f"http://127.0.0.1:{local.probe_port}/healthz"
            deadline = time.monotonic() + 20
            while True:
                assert nginx.poll() is None, (tmp_path / "nginx.stderr").read_text()
                try:
                    up = http.get(probe)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "nginx did not answer its probe"
                    time.sleep(0.05)
            assert (up.status_code, up.text) == (200, "ok\n")
            assert not gateway.seen, "the probe is nginx's own"

            door = f"http://127.0.0.1:{local.port}"
            forged = {USER_HEADER: "admin", SECRET_HEADER: "forged"}
            me = http.get(f"{door}/v1/me/wallets", headers={"Authorization": f"Bearer {TOKEN}", **forged})
            assert me.status_code == 200, me.text
            (path, headers), *_ = gateway.seen
            assert path == "/v1/me/wallets"
            assert headers[USER_HEADER.lower()] == USER and headers[SECRET_HEADER.lower()] == SECRET
            assert [p for p, _ in auth.seen] == ["/verify"]

            refused = http.get(f"{door}/v1/me/wallets", headers={"Authorization": "Bearer bad", **forged})
            assert refused.status_code == 401 and len(gateway.seen) == 1, "refused at nginx"

            other = http.get(f"{door}/v1/intents", headers={**forged, SECRET_HEADER: SECRET})
            assert other.status_code == 200
            _, headers = gateway.seen[-1]
            assert USER_HEADER.lower() not in headers and SECRET_HEADER.lower() not in headers

            assert http.get(f"{door}/_pm_auth").status_code == 404  # internal
            assert http.post(f"{door}/v1/webhooks/ipps", content=b"{}").status_code == 404
            assert len(gateway.seen) == 2
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
