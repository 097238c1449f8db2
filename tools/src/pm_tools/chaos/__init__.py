"""`pm chaos`: the whole fleet under load while processes are SIGKILLed and Redis and PostgreSQL
restart, then every invariant (docs/invariants.md) checked.

Modules: `servers` (the run's private Redis and PostgreSQL), `fleet` (the processes), `load` (the
seeded traffic plan: users, the merchant and its mini-app, every intent type), `send` (the traffic
on the wire), `schedule` (the seeded chaos), `facts` (reading back into `rows`), `invariants` (the
checks), `report`, `run` (one run start to finish). Nothing here imports pytest.
"""

from __future__ import annotations

from pm_tools.chaos.report import Report
from pm_tools.chaos.run import ChaosOptions, run_chaos
from pm_tools.chaos.servers import ServersUnavailable

__all__ = ["ChaosOptions", "Report", "ServersUnavailable", "run_chaos"]
