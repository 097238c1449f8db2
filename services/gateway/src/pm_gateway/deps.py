"""What the request handlers use, built once per process in the app's lifespan."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from redis.asyncio import Redis

from pm_gateway.auth import Authenticator
from pm_gateway.events import EventWaiters
from pm_gateway.group_commit import GroupCommit
from pm_gateway.settings import Settings
from pm_shared.db import Pool
from pm_shared.ledger import Ledger
from pm_shared.outbox import Marks
from pm_shared.streams import Publisher

log = logging.getLogger(__name__)


@dataclass
class Deps:
    settings: Settings
    pool: Pool
    redis: Redis
    publisher: Publisher
    auth: Authenticator
    waiters: EventWaiters
    ledger: Ledger
    marks: Marks
    intake: GroupCommit
