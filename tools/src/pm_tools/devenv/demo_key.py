"""The demo key `pm up` prints: one admin service key per checkout, kept in `.pm/demo-key.json`.

A development convenience only: the file holds a secret (mode 0600, under the git-ignored `.pm/`).
It is reused while it still verifies against the database, and replaced when it does not (a new
database, a new key-encryption key).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from pm_shared.db import Conn
from pm_shared.keys.crypto import Cipher
from pm_shared.keys.store import ALL_OPERATIONS, Permissions, create_key, verification_secrets


class DemoKey(msgspec.Struct, rename="camel"):
    key_id: str
    secret: str


def _read(path: Path) -> DemoKey | None:
    try:
        return msgspec.json.decode(path.read_bytes(), type=DemoKey)
    except (FileNotFoundError, msgspec.DecodeError):
        return None


def _write(path: Path, key: DemoKey) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(msgspec.json.encode(key) + b"\n")


async def demo_key(conn: Conn, cipher: Cipher, path: Path) -> DemoKey:
    stored = _read(path)
    if stored is not None:
        found = await verification_secrets(conn, cipher, stored.key_id)
        if found is not None and stored.secret in found[1]:
            return stored
    key, secret = await create_key(
        conn,
        cipher,
        permissions=Permissions(operations=frozenset({ALL_OPERATIONS}), owners=None, admin=True),
        description="demo key of `pm up`",
    )
    made = DemoKey(key_id=key.key_id, secret=secret)
    _write(path, made)
    return made
