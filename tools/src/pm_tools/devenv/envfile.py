"""The env file `pm dev ensure` and `pm up` write, and every `pm` command reads.

It holds this checkout's servers' URLs and its key-encryption key (`.pm/env` by default; `make`
sources the same file). A command run in a second terminal, without the `PM_*` variables, finds its
settings there, as the fleet `pm up` started does; a variable already set wins over the file.
"""

from __future__ import annotations

import base64
import os
import shlex
from collections.abc import Mapping
from pathlib import Path

from pm_tools.devenv.common import default_home

KEY_VARIABLE = "PM_KEY_ENCRYPTION_KEY"
FILE_VARIABLE = "PM_ENV_FILE"
"""Names another env file than `<PM_HOME or .pm>/env`; read by the tools only, never passed on."""


def env_file_path(environ: Mapping[str, str] | None = None) -> Path:
    """`PM_ENV_FILE`, else `env` in this checkout's `.pm` directory (`PM_HOME`)."""
    env = os.environ if environ is None else environ
    named = env.get(FILE_VARIABLE)
    return Path(named).absolute() if named else default_home(env) / "env"


def without_file_variable(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (ours by default) without `PM_ENV_FILE`: what a settings loader or a service may see."""
    env = dict(os.environ if environ is None else environ)
    env.pop(FILE_VARIABLE, None)
    return env


def with_env_file(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (ours by default) plus the env file's `PM_*` variables it does not set, without
    `PM_ENV_FILE` itself (no service knows that one)."""
    from_file = read_env_file(env_file_path(environ))
    env = without_file_variable(environ)
    for name, value in from_file.items():
        if name.startswith("PM_") and name != FILE_VARIABLE and not env.get(name):
            env[name] = value
    return env


def read_env_file(path: Path) -> dict[str, str]:
    """The `NAME=value` lines of `path` (values shell-unquoted); empty when the file does not exist."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return {}
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.strip().partition("=")
        if not sep or name.startswith("#"):
            continue
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        found[name.strip()] = words[0] if words else ""
    return found


def new_key_encryption_key() -> str:
    """The base64 of 32 random bytes (AES-256)."""
    return base64.b64encode(os.urandom(32)).decode()


def key_encryption_key(path: Path) -> str:
    """The key already in the env file at `path`, else a new one.

    Never replaced once written: every service-key secret in the database is encrypted under it.
    """
    return read_env_file(path).get(KEY_VARIABLE) or new_key_encryption_key()


def write_env_file(path: Path, urls: Mapping[str, str]) -> None:
    """Write `urls` and the (kept or new) key-encryption key to `path`, readable only by its owner."""
    values = {**urls, KEY_VARIABLE: key_encryption_key(path)}
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created private: the file holds a secret. An existing file keeps its mode.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(
            "# Written by `pm dev ensure`: this checkout's Redis and PostgreSQL, and the key that encrypts\n"
            "# service-key secrets in the database (kept across runs: a new one makes them unreadable).\n"
            + "\n".join(lines)
            + "\n"
        )
