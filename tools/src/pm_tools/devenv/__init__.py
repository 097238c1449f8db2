"""Find or start the Redis and PostgreSQL a developer's fleet runs against."""

from __future__ import annotations

from pm_tools.devenv.common import (
    POSTGRES_BIN_GLOBS,
    REDIS_SYSTEM_MARKERS,
    DevEnvError,
    Endpoint,
    Search,
    Strategy,
    default_home,
    port_open,
    redact,
    run,
    tail,
    wait_until,
)
from pm_tools.devenv.common import _pid_alive as _pid_alive
from pm_tools.devenv.ensure import DevEnv, ensure, stop_private
from pm_tools.devenv.envfile import (
    FILE_VARIABLE,
    KEY_VARIABLE,
    env_file_path,
    key_encryption_key,
    read_env_file,
    with_env_file,
    write_env_file,
)
from pm_tools.devenv.postgres_server import (
    DATABASE_NAME,
    MIN_POSTGRES,
    POSTGRES_INSTALL_HINT,
    PrivatePostgres,
    find_postgres,
    postgres_bindir,
    postgres_problem,
)
from pm_tools.devenv.postgres_server import _with_database as _with_database
from pm_tools.devenv.redis_server import (
    MIN_REDIS,
    REDIS_INSTALL_HINT,
    PrivateRedis,
    find_redis,
    redis_problem,
)

# The public API; the tests also reach `_pid_alive` and `_with_database`, re-exported `as` themselves above.
__all__ = [
    "DATABASE_NAME",
    "FILE_VARIABLE",
    "KEY_VARIABLE",
    "MIN_POSTGRES",
    "MIN_REDIS",
    "POSTGRES_BIN_GLOBS",
    "POSTGRES_INSTALL_HINT",
    "REDIS_INSTALL_HINT",
    "REDIS_SYSTEM_MARKERS",
    "DevEnv",
    "DevEnvError",
    "Endpoint",
    "PrivatePostgres",
    "PrivateRedis",
    "Search",
    "Strategy",
    "default_home",
    "ensure",
    "env_file_path",
    "find_postgres",
    "find_redis",
    "key_encryption_key",
    "port_open",
    "postgres_bindir",
    "postgres_problem",
    "read_env_file",
    "redact",
    "redis_problem",
    "run",
    "stop_private",
    "tail",
    "wait_until",
    "with_env_file",
    "write_env_file",
]
