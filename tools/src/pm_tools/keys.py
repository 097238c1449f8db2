"""Service keys as `pm keys` manages them, and the key-encryption key their secrets are stored under.

The key-encryption key (`PM_KEY_ENCRYPTION_KEY`) is never replaced once a secret is stored under it:
a new one would make every stored secret unreadable. So when it is missing while keys exist, the
error says where the existing one is expected, never how to make another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from pm_client.api import INTENT_TYPES, MINIAPP_TYPES
from pm_shared import db
from pm_shared.keys import store
from pm_shared.keys.crypto import Cipher, KeyConfigError
from pm_tools import queries as q
from pm_tools.database import connection
from pm_tools.devenv.envfile import KEY_VARIABLE, key_encryption_key, read_env_file, write_env_file

# Merchants' keys (MINIAPP_*, and REFUND: a merchant refunds its own charges) are made by onboarding
# a merchant (`pm merchants create`), not here.
OPERATIONS: tuple[str, ...] = tuple(t for t in INTENT_TYPES if t not in MINIAPP_TYPES and t != "REFUND")
ADMIN_ONLY = "ADJUSTMENT"
APPLICATION = "pm keys"
MAX_DESCRIPTION = 200


def permissions_for(
    operations: Sequence[str] | None, owners: Sequence[str] | None, *, admin: bool
) -> store.Permissions:
    """The permissions a new key asks for; ValueError says what is wrong with them."""
    wanted = [o.strip().upper() for o in operations] if operations else list(OPERATIONS)
    if not operations and not admin:
        wanted.remove(ADMIN_ONLY)
    for operation in wanted:
        if operation != store.ALL_OPERATIONS and operation not in OPERATIONS:
            raise ValueError(
                f"unknown operation {operation!r} (known: {', '.join(OPERATIONS)}, or * for all)"
            )
        if operation in (ADMIN_ONLY, store.ALL_OPERATIONS) and not admin:
            raise ValueError(f"operation {operation} is for admin keys only: add --admin")
    stripped = [o.strip() for o in owners] if owners is not None else None
    if stripped is not None and any(not o for o in stripped):
        raise ValueError("--owner must not be empty")
    return store.Permissions(
        operations=frozenset(wanted),
        owners=frozenset(stripped) if stripped else None,
        admin=admin,
    )


# --- the key-encryption key ----------------------------------------------------------------------


def check_setting(setting: str) -> None:
    """KeyConfigError when the key is set but is not one (unset is judged later, with the database)."""
    if setting.strip():
        Cipher.from_setting(setting)


async def stored_keys(conn: db.Conn) -> int:
    return int(await conn.fetchval(q.COUNT_SERVICE_KEYS))


def missing_key_message(stored: int, env_file: Path) -> str:
    """Why a missing key-encryption key cannot simply be made anew, and where the one in use belongs."""
    return (
        f"{KEY_VARIABLE} is not set, and pm.service_key holds {stored} key(s) whose secrets are encrypted "
        f"under it: set {KEY_VARIABLE} to the key they were made with, in the environment or in {env_file} "
        "(another key would leave every stored secret unreadable)"
    )


def first_key_message(env_file: Path) -> str:
    """How to make the key-encryption key, for a database that stores no service key yet."""
    return (
        f"{KEY_VARIABLE} is not set, and no service key is stored yet: set it to the base64 of 32 random "
        "bytes (e.g. `python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())'`), "
        f"in the environment or in {env_file} (`make up` writes one there), and keep it"
    )


async def cipher(conn: db.Conn, setting: str, env_file: Path) -> Cipher:
    """The cipher of the key-encryption key; KeyConfigError when it is missing or invalid.

    A missing one: while no key is stored, `first_key_message` says how to make one; once keys
    exist, `missing_key_message` says where the one in use belongs.
    """
    if not setting.strip():
        stored = await stored_keys(conn)
        raise KeyConfigError(missing_key_message(stored, env_file) if stored else first_key_message(env_file))
    return Cipher.from_setting(setting)


async def checkout_key(
    conn: db.Conn, environ: Mapping[str, str], env_file: Path, urls: Mapping[str, str]
) -> str:
    """This checkout's key-encryption key, as `pm up` runs the fleet with it: set, else kept in the
    env file, else (while no key is stored under any) a new one written there with `urls` to keep."""
    key = environ.get(KEY_VARIABLE) or read_env_file(env_file).get(KEY_VARIABLE)
    if key:
        return key
    stored = await stored_keys(conn)
    if stored:
        raise KeyConfigError(missing_key_message(stored, env_file))
    write_env_file(env_file, urls)
    return key_encryption_key(env_file)


# --- the commands' work --------------------------------------------------------------------------


async def create(
    url: str, setting: str, env_file: Path, permissions: store.Permissions, description: str
) -> tuple[store.ServiceKey, str]:
    """A new key and its secret (shown once: only its encrypted form is stored)."""
    async with connection(url, APPLICATION) as conn:
        key_cipher = await cipher(conn, setting, env_file)
        return await store.create_key(conn, key_cipher, permissions=permissions, description=description)


async def rotate(
    url: str, setting: str, env_file: Path, key_id: str, grace_s: float
) -> tuple[store.ServiceKey, str]:
    """A new secret for `key_id`; the previous one stays valid for `grace_s` seconds."""
    async with connection(url, APPLICATION) as conn:
        key_cipher = await cipher(conn, setting, env_file)
        return await store.rotate_key(conn, key_cipher, key_id, grace_s=grace_s)


async def deactivate(url: str, key_id: str) -> store.ServiceKey:
    async with connection(url, APPLICATION) as conn:
        return await store.deactivate_key(conn, key_id)


async def list_all(url: str) -> list[store.ServiceKey]:
    async with connection(url, APPLICATION) as conn:
        return await store.list_keys(conn)
