"""`pm up`'s work before the fleet starts: the ports it needs, the servers, the schema, the streams,
this checkout's key-encryption key and demo key, and the environment every member gets.

The fleet is the roster (`pm_shared.fleet`); `pm_tools.supervisor` then runs it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pm_shared import db, streams
from pm_shared.fleet import AUTH_SANDBOX, GATEWAY, Member
from pm_shared.keys.crypto import Cipher
from pm_shared.settings import CommonSettings
from pm_shared.streams.connection import connect
from pm_tools import devenv, frontdoor, keys, processes
from pm_tools.devenv.demo_key import DemoKey, demo_key
from pm_tools.devenv.envfile import without_file_variable

# The sandboxes' callbacks go to the gateway this run starts: (sandbox URL variable, gateway route,
# sandbox secret variable, gateway secret variable). Both sides default to the same secret.
CALLBACKS: tuple[tuple[str, str, str, str], ...] = (
    (
        "PM_IPPS_SANDBOX_CALLBACK_URL",
        "/v1/webhooks/ipps",
        "PM_IPPS_SANDBOX_CALLBACK_SECRET",
        "PM_GATEWAY_IPPS_CALLBACK_SECRET",
    ),
    (
        "PM_QP_SANDBOX_CALLBACK_URL",
        "/v1/webhooks/qp",
        "PM_QP_SANDBOX_SECRET",
        "PM_GATEWAY_QP_CALLBACK_SECRET",
    ),
)


def port_of(member: Member, environ: Mapping[str, str]) -> int:
    """The port `member` will listen on: its variable's, else the roster's; ValueError when the
    variable holds no port number."""
    raw = environ.get(member.port_variable)
    if not raw:
        return member.port
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{member.port_variable}={raw!r} is not a port number") from None


async def busy_ports(children: Sequence[Member], environ: Mapping[str, str]) -> list[str]:
    """What already listens where a child would: one line per port taken."""
    return [
        f"port {port} ({child.port_variable}) for {child.name} is already in use"
        for child in children
        if await devenv.port_open(processes.HOST, port := port_of(child, environ))
    ]


def callback_wiring(children: Sequence[Member], environ: Mapping[str, str]) -> dict[str, str]:
    """Variables pointing the sandboxes' callbacks at the gateway, signed with the secret it checks.

    What the environment sets already is kept: a callback URL elsewhere, or two different secrets
    (to watch the gateway refuse forged callbacks). A secret set on one side only is given to the other.
    """
    if GATEWAY not in children:
        return {}  # nothing would answer: the sandboxes send no callbacks
    gateway = processes.base_url(port_of(GATEWAY, environ))
    wiring: dict[str, str] = {}
    for url_var, route, sandbox_secret, gateway_secret in CALLBACKS:
        if not environ.get(url_var):
            wiring[url_var] = gateway + route
        shared = environ.get(sandbox_secret) or environ.get(gateway_secret)
        for var in (sandbox_secret, gateway_secret):
            if shared and not environ.get(var):
                wiring[var] = shared
    return wiring


def qp_token_wiring(environ: Mapping[str, str]) -> dict[str, str]:
    """The QP sandbox's secret is also the bearer token adapter-qp must send: one set without the
    other is given to the other, or every top-up would be refused (401) and dead-lettered."""
    sandbox, adapter = "PM_QP_SANDBOX_SECRET", "PM_ADAPTER_QP_QP_SECRET"
    if environ.get(sandbox) and not environ.get(adapter):
        return {adapter: environ[sandbox]}
    if environ.get(adapter) and not environ.get(sandbox):
        return {sandbox: environ[adapter]}
    return {}


@dataclass(frozen=True)
class Ready:
    """What `prepare` leaves in place for the fleet."""

    key_encryption_key: str
    demo: DemoKey
    demo_file: Path


async def prepare(
    infra: devenv.DevEnv, settings: CommonSettings, say: Callable[[str], None], home: Path | None = None
) -> Ready:
    """Create the database if needed, migrate it, provision the streams, settle this checkout's
    key-encryption key (`keys.checkout_key`) and its demo key; `say` hears each step done."""
    if await db.ensure_database(infra.database_url):
        say(f"created database {db.dsn_database(infra.database_url)}")
    applied = await db.migrate(infra.database_url)
    say(f"migrations: {len(applied)} applied, schema up to date")
    redis = connect(infra.redis_url)
    try:
        created = await streams.provision(redis, settings.stream_partitions)
    finally:
        await redis.aclose()
    say(f"streams: provisioned ({created} new consumer groups)")
    home = home or devenv.default_home()
    conn = await db.connect(infra.database_url)
    try:
        key = await keys.checkout_key(conn, os.environ, devenv.env_file_path(), infra.env())
        demo = await demo_key(conn, Cipher.from_setting(key), home / "demo-key.json")
    finally:
        await conn.close()
    return Ready(key, demo, home / "demo-key.json")


def fleet_env(
    infra: devenv.DevEnv, children: Sequence[Member], key_encryption_key: str, *, json_logs: bool
) -> dict[str, str]:
    """Ours, plus the servers found, the log format, the key and the sandboxes' wiring: what every
    child starts with (`pm_tools.supervisor` adds its consumer name)."""
    env = without_file_variable()
    env.update(infra.env())
    env["PM_LOG_FORMAT"] = "json" if json_logs else "text"
    # Children write to a pipe; without this their lines would arrive in 8 KiB bursts.
    env["PYTHONUNBUFFERED"] = "1"
    env[devenv.KEY_VARIABLE] = key_encryption_key
    env.update(qp_token_wiring(env))
    env.update(callback_wiring(children, env))
    env.update(front_door_wiring(env))
    # A developer's webhook receiver runs on this machine: an endpoint may name loopback over plain
    # http here (only), and pm-webhooks may call it.
    env.setdefault("PM_WEBHOOKS_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    env.setdefault("PM_GATEWAY_WEBHOOK_ALLOWED_NETWORKS", "127.0.0.0/8,::1/128")
    env.setdefault("PM_GATEWAY_WEBHOOK_ALLOW_HTTP", "true")
    return env


FRONT_DOOR_PORT_VARIABLE = "PM_FRONT_DOOR_PORT"
FRONT_DOOR_PORT = 8000


def front_door_wiring(environ: Mapping[str, str]) -> dict[str, str]:
    """The proxy secret the front door adds and the gateway checks: the one set, else a new one for
    this run (nothing outside this run needs to know it)."""
    if environ.get("PM_GATEWAY_PROXY_SECRET"):
        return {}
    return {"PM_GATEWAY_PROXY_SECRET": secrets.token_urlsafe(24)}


def front_door(children: Sequence[Member], environ: Mapping[str, str]) -> frontdoor.FrontDoor | None:
    """The front door this run serves (nginx before the gateway and the Auth Center sandbox), or None
    when one of the two is not in the run."""
    if GATEWAY not in children or AUTH_SANDBOX not in children:
        return None
    port = int(environ.get(FRONT_DOOR_PORT_VARIABLE) or FRONT_DOOR_PORT)
    return frontdoor.FrontDoor(
        f"{processes.HOST}:{port}",
        processes.base_url(port_of(GATEWAY, environ)),
        processes.base_url(port_of(AUTH_SANDBOX, environ)),
        environ["PM_GATEWAY_PROXY_SECRET"],
    )
