"""The roster of the fleet: every process PM runs, defined once.

A member is a service (its own Deployment in production) or a PSP sandbox (a stand-in for a PSP in
tests and `make up`). Everything that needs to know the fleet reads it here: the settings loader
(which `PM_<PREFIX>_*` variables belong to another process), the stream names (the consumer groups),
`pm up`, chaos, bench, the test fleet and the compose/Kubernetes checks. A service's own settings
take their default port from here. Which streams a group reads is said by the streams themselves
(`pm_shared.streams.names.streams_read_by`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["service", "sandbox"]


@dataclass(frozen=True)
class Member:
    """One process of the fleet."""

    name: str
    """`gateway`, `ledger-writer`, `ipps-sandbox`: the process, its log name and its consumer group's name."""
    module: str
    """The package run as `python -m <module>`; its settings are `<module>.settings`."""
    prefix: str
    """Its own variables are `PM_<prefix><FIELD>` (`PM_GATEWAY_PORT`)."""
    port: int
    """The default port of its HTTP endpoint (health, readiness and metrics; the API for the gateway)."""
    kind: Kind = "service"
    consumes: bool = False
    """It reads streams, in a consumer group named after it."""
    api: bool = False
    """The process a developer talks to."""
    single_active: bool = False
    """Only one replica works at a time (a lease); the others stand by, alive but not ready."""

    @property
    def group(self) -> str | None:
        """Its consumer group (`pm_shared.streams.names` says which streams each group reads)."""
        return self.name if self.consumes else None

    @property
    def port_variable(self) -> str:
        return f"PM_{self.prefix}PORT"

    @property
    def script(self) -> str | None:
        """The console script a service's image runs (`pm-gateway`); sandboxes run as modules."""
        return f"pm-{self.name}" if self.kind == "service" else None

    @property
    def metrics(self) -> bool:
        """Services export Prometheus metrics; sandboxes (stand-ins for outside PSPs) do not."""
        return self.kind == "service"


GATEWAY = Member("gateway", "pm_gateway", "GATEWAY_", 8080, api=True)
ORCHESTRATOR = Member("orchestrator", "pm_orchestrator", "ORCHESTRATOR_", 9101, consumes=True)
LEDGER_WRITER = Member(
    "ledger-writer", "pm_ledger_writer", "LEDGER_WRITER_", 9102, consumes=True, single_active=True
)
ADAPTER_IPPS = Member("adapter-ipps", "pm_adapter_ipps", "ADAPTER_IPPS_", 9103, consumes=True)
ADAPTER_QP = Member("adapter-qp", "pm_adapter_qp", "ADAPTER_QP_", 9104, consumes=True)
RECONCILER = Member("reconciler", "pm_reconciler", "RECONCILER_", 9105, consumes=True)
WEBHOOKS = Member("webhooks", "pm_webhooks", "WEBHOOKS_", 9106, consumes=True)
"""Delivers merchants' webhooks (docs/webhooks.md)."""
IPPS_SANDBOX = Member("ipps-sandbox", "pm_sandbox_ipps", "IPPS_SANDBOX_", 9201, kind="sandbox")
QP_SANDBOX = Member("qp-sandbox", "pm_sandbox_qp", "QP_SANDBOX_", 9202, kind="sandbox")
AUTH_SANDBOX = Member("auth-sandbox", "pm_sandbox_auth", "AUTH_SANDBOX_", 9203, kind="sandbox")
"""The Auth Center's stand-in: end users' tokens, and the verify endpoint nginx's `auth_request` asks."""

SERVICES: tuple[Member, ...] = (
    GATEWAY,
    ORCHESTRATOR,
    LEDGER_WRITER,
    ADAPTER_IPPS,
    ADAPTER_QP,
    RECONCILER,
    WEBHOOKS,
)
SANDBOXES: tuple[Member, ...] = (IPPS_SANDBOX, QP_SANDBOX, AUTH_SANDBOX)
FLEET: tuple[Member, ...] = SERVICES + SANDBOXES


def member(name: str) -> Member:
    """The member called `name`; ValueError names the known ones."""
    for candidate in FLEET:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown member {name!r}; the fleet: {', '.join(m.name for m in FLEET)}")
