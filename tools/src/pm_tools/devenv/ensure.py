"""The orchestration: find or start both servers, hand back their URLs, and stop private instances."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pm_tools.devenv.common import DevEnvError, Endpoint, Search, Strategy, redact
from pm_tools.devenv.postgres_server import PrivatePostgres, find_postgres
from pm_tools.devenv.redis_server import PrivateRedis, find_redis


@dataclass(frozen=True)
class DevEnv:
    redis: Endpoint
    postgres: Endpoint

    @property
    def redis_url(self) -> str:
        return self.redis.url

    @property
    def database_url(self) -> str:
        return self.postgres.url

    @property
    def redis_strategy(self) -> Strategy:
        return self.redis.strategy

    @property
    def database_strategy(self) -> Strategy:
        return self.postgres.strategy

    def env(self) -> dict[str, str]:
        return {"PM_REDIS_URL": self.redis_url, "PM_DATABASE_URL": self.database_url}

    async def stop(self) -> list[str]:
        """Stop the private instances this call started (never reused ones, never system servers)."""
        stopped: list[str] = []
        for name, endpoint in (("PostgreSQL", self.postgres), ("Redis", self.redis)):
            if endpoint.stop is not None:
                await endpoint.stop()
                stopped.append(f"private {name} at {redact(endpoint.url)}")
        return stopped


async def ensure(search: Search | None = None, environ: Mapping[str, str] | None = None) -> DevEnv:
    """Find or start Redis and PostgreSQL: env URL, local default port, system server, private instance."""
    search = search or Search.default(environ)
    env = os.environ if environ is None else environ
    errors: list[str] = []
    found: list[Endpoint] = []
    for finder in (find_redis, find_postgres):
        try:
            found.append(await finder(search, env))
        except DevEnvError as exc:
            errors.append(str(exc))
    if errors:
        for endpoint in found:
            if endpoint.stop is not None:
                await endpoint.stop()
        raise DevEnvError("\n".join(errors))
    return DevEnv(redis=found[0], postgres=found[1])


async def stop_private(home: Path) -> list[str]:
    """Stop every private instance under `home`, whoever started it; returns what was stopped."""
    stopped: list[str] = []
    pg = PrivatePostgres(home / "pg")
    if await pg.stop():
        stopped.append(f"PostgreSQL in {pg.dir}")
    rd = PrivateRedis(home / "redis")
    if await rd.stop():
        stopped.append(f"Redis in {rd.dir}")
    return stopped
