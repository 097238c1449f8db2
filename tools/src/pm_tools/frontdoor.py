"""The front door: nginx in front of the gateway, asking the Auth Center about end users (docs/api.md,
"End users"). `server_block` is the one definition of what nginx does; `compose/nginx/pm.conf.template`
is it rendered for docker compose (a test keeps the two equal), `config` wraps it in what a private,
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


COMPOSE = FrontDoor("8000", "http://gateway:8080", "http://auth-sandbox:9203", "${PM_PROXY_SECRET}")
"""compose/nginx/pm.conf.template: the nginx image substitutes the secret from its environment."""


def server_block(door: FrontDoor) -> str:
    """The `server { … }` of the front door (nginx syntax)."""
    gateway, auth, secret = door.gateway_url.rstrip("/"), door.auth_url.rstrip("/"), door.proxy_secret
    return f"""server {{
    listen {door.listen};
    # Identity is set here or not at all: whatever a client sent in these headers is dropped.
    proxy_set_header X-PM-User "";
    proxy_set_header X-PM-Proxy-Secret "";

    location = /_pm_auth {{
        internal;
        proxy_pass {auth}/verify;
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header Authorization $http_authorization;
        proxy_set_header X-PM-User "";
        proxy_set_header X-PM-Proxy-Secret "";
    }}

    location /v1/me/ {{
        auth_request /_pm_auth;
        auth_request_set $pm_user $upstream_http_x_user_id;
        proxy_set_header X-PM-User $pm_user;
        proxy_set_header X-PM-Proxy-Secret "{secret}";
        proxy_pass {gateway};
    }}

    location /v1/webhooks/ {{
        return 404;
    }}

    location / {{
        proxy_pass {gateway};
    }}
}}
"""


def config(door: FrontDoor, prefix: Path) -> str:
    """A whole nginx.conf for an unprivileged nginx whose files all live under `prefix`."""
    return f"""daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log stderr warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{_indent(server_block(door))}}}
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
