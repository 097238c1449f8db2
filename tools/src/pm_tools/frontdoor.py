"""The front door: nginx in front of the gateway, asking the Auth Center about end users (docs/api.md,
"End users"). `server_block` is the one definition of what nginx does; `compose/nginx/pm.conf.template`
is it rendered for docker compose, `compose/k8s/front-door/nginx.conf.template` (`kubernetes_template`)
the whole nginx.conf of the Kubernetes pod (tests keep both equal to what this module renders:
`python -m pm_tools.frontdoor compose|kubernetes` prints them), `config` wraps it in what a private,
unprivileged nginx needs (`make up`, the tests), and `start` runs one.

What it does, per location:
- `/v1/me/`: `auth_request` to the Auth Center's `/verify` (the client's `Authorization` only); a 2xx
  answer's `X-User-Id` becomes `X-PM-User`, and the proxy secret is added. A client's own `X-PM-User`
  or proxy secret never passes: both are set here, from nothing the client sent.
- `/_pm_auth`: the subrequest itself, `internal` (a client asking for it gets 404).
- `/v1/webhooks/`: 404. PSPs call the gateway directly, from the addresses its allowlist names; through
  here every callback would come from nginx's own address.
- everything else: passed to the gateway as it is, the identity headers emptied (so not sent).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NGINX = "nginx"
INSTALL_HINT = "install nginx (Debian: `apt-get install nginx`; it includes the auth_request module)"


@dataclass(frozen=True)
class FrontDoor:
    listen: str
    """`port` or `address:port`."""
    gateway_url: str
    auth_url: str
    proxy_secret: str
    verify_path: str = "/verify"
    """Added to `auth_url` for the subrequest: the sandbox's endpoint. Empty where `auth_url` is the
    whole verify URL already (Kubernetes: the real Auth Center's, which is configuration)."""


COMPOSE = FrontDoor("8000", "http://gateway:8080", "http://auth-sandbox:9203", "${PM_PROXY_SECRET}")
"""compose/nginx/pm.conf.template: the nginx image substitutes the secret from its environment."""

KUBERNETES = FrontDoor(
    "8080", "http://gateway:8080", "${PM_AUTH_CENTER_VERIFY_URL}", "${PM_PROXY_SECRET}", verify_path=""
)
"""The server of `kubernetes_template`. The nginx image's entrypoint substitutes both variables from
the pod's environment (the secret from a Secret, the URL from a ConfigMap), so neither is written in
a ConfigMap. `gateway` is the gateway's Service in the pod's own namespace (the resolver's search
list finds it); nginx resolves both host names once, at start."""
KUBERNETES_PROBE_PORT = 8081
"""The kubelet's probes ask nginx itself on this port, never the gateway behind it: a gateway outage
must neither restart the front door nor take it out of its Service. No Service exposes it."""
KUBERNETES_RUNTIME_DIR = Path("/tmp")
"""The pod's only writable directory (an emptyDir on a read-only root file system): the rendered
config, the pid file and nginx's temp files."""
KUBERNETES_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
"""Debian's CA bundle, in the official nginx image (it installs `ca-certificates`)."""


def _auth(door: FrontDoor) -> tuple[str, str]:
    """The Auth Center's `upstream` block (empty when there is none) and the subrequest's URL. A plain
    `http://host:port` Auth Center (the sandbox's) gets kept-alive connections too; a whole verify URL
    from configuration (Kubernetes: often https, named by a variable) is proxied to as it is."""
    auth = door.auth_url.rstrip("/")
    if not auth.startswith("http://") or "$" in auth or "/" in auth.removeprefix("http://"):
        return "", auth + door.verify_path
    upstream = f"""upstream pm_auth {{
    server {auth.removeprefix("http://")};
    keepalive 16;
}}

"""
    return upstream, "http://pm_auth" + door.verify_path


def server_block(door: FrontDoor) -> str:
    """The front door's `upstream` blocks and its `server { … }` (nginx syntax, http context)."""
    gateway, secret = door.gateway_url.rstrip("/"), door.proxy_secret
    auth_upstream, verify = _auth(door)
    return f"""# Connections are kept alive: without this nginx opens one per request (HTTP/1.0), a TCP
# handshake the gateway (and the Auth Center) pays for on every request (`pm bench`, front door).
upstream pm_gateway {{
    server {gateway.removeprefix("http://")};
    keepalive 32;
}}

{auth_upstream}server {{
    listen {door.listen};
    proxy_http_version 1.1;
    # Identity is set here or not at all: whatever a client sent in these headers is dropped.
    proxy_set_header X-PM-User "";
    proxy_set_header X-PM-Proxy-Secret "";
    proxy_set_header Connection "";

    location = /_pm_auth {{
        internal;
        proxy_pass {verify};
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Authorization $http_authorization;
        proxy_set_header X-PM-User "";
        proxy_set_header X-PM-Proxy-Secret "";
        proxy_set_header Connection "";
    }}

    location /v1/me/ {{
        auth_request /_pm_auth;
        auth_request_set $pm_user $upstream_http_x_user_id;
        proxy_set_header X-PM-User $pm_user;
        proxy_set_header X-PM-Proxy-Secret "{secret}";
        proxy_set_header Connection "";
        proxy_pass http://pm_gateway;
    }}

    location /v1/webhooks/ {{
        return 404;
    }}

    location / {{
        proxy_pass http://pm_gateway;
    }}
}}
"""


def config(door: FrontDoor, prefix: Path) -> str:
    """A whole nginx.conf for an unprivileged nginx whose files all live under `prefix`."""
    return _nginx_conf(prefix, workers=1, access_log="off", http=[server_block(door)])


def kubernetes_template() -> str:
    """compose/k8s/front-door/nginx.conf.template: the whole nginx.conf of the front door's pod.

    The official nginx image's entrypoint renders it at start (`envsubst`, the variables of
    `KUBERNETES`) into `KUBERNETES_RUNTIME_DIR`, and nginx runs that file; no other config of the
    image is read, so its `user`, `pid` in /var/run and root-owned paths do not matter.
    """
    return "".join(
        [
            "# Generated by pm_tools.frontdoor (`python -m pm_tools.frontdoor kubernetes`): edit that,\n",
            "# not this. The pod's entrypoint substitutes ${PM_*} from its environment at start.\n",
            _nginx_conf(
                KUBERNETES_RUNTIME_DIR,
                workers=2,
                access_log="/dev/stdout",
                http=[_UPSTREAM_TLS, server_block(KUBERNETES), _probe_server(KUBERNETES_PROBE_PORT)],
            ),
        ]
    )


_UPSTREAM_TLS = f"""# An https Auth Center: nginx checks no upstream certificate unless told to (nor sends
# SNI), and its default chain depth (1) refuses most public chains.
proxy_ssl_verify on;
proxy_ssl_verify_depth 3;
proxy_ssl_trusted_certificate {KUBERNETES_CA_BUNDLE};
proxy_ssl_server_name on;
"""


def _probe_server(port: int) -> str:
    return f"""# The kubelet's probes: nginx itself, not what it proxies to.
server {{
    listen {port};
    location = /healthz {{
        access_log off;
        return 200 "ok\\n";
    }}
    location / {{
        return 404;
    }}
}}
"""


def _nginx_conf(prefix: Path, *, workers: int, access_log: str, http: Sequence[str]) -> str:
    """An nginx.conf in the foreground whose writable files all live under `prefix`; `http`: the
    blocks of its http context, in order."""
    blocks = "".join(_indent(block) for block in http)
    return f"""daemon off;
worker_processes {workers};
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log {access_log};
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{blocks}}}
"""


def _indent(text: str) -> str:
    return "".join(f"    {line}" if line.strip() else line for line in text.splitlines(keepends=True))


def installed() -> str | None:
    """The nginx binary, or None."""
    return shutil.which(NGINX) or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None
    )


def start(door: FrontDoor, prefix: Path, *, stderr: int | None = None) -> subprocess.Popen[bytes]:
    """nginx serving `door` in the foreground, its files under `prefix`; FileNotFoundError without it."""
    binary = installed()
    if binary is None:
        raise FileNotFoundError(f"no nginx found: {INSTALL_HINT}")
    prefix.mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(config(door, prefix))
    return subprocess.Popen([binary, "-e", "stderr", "-p", str(prefix), "-c", str(conf)], stderr=stderr)


RENDERINGS = {"compose": lambda: server_block(COMPOSE), "kubernetes": kubernetes_template}
"""What `main` prints, by target: the committed files a test keeps equal to this module."""


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m pm_tools.frontdoor compose|kubernetes`: print that rendering, to regenerate
    compose/nginx/pm.conf.template or compose/k8s/front-door/nginx.conf.template after a change here."""
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1 or args[0] not in RENDERINGS:
        print(f"usage: python -m pm_tools.frontdoor {'|'.join(RENDERINGS)}", file=sys.stderr)
        return 2
    sys.stdout.write(RENDERINGS[args[0]]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
