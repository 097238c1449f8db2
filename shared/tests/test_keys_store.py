"""pm_shared.keys: AES-GCM at rest, and the service-key store on real PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import os
import re
from datetime import timedelta

import asyncpg
import msgspec
import pytest

from pm_shared.db import Conn, Pool
from pm_shared.keys import store
from pm_shared.keys.crypto import Cipher, DecryptionError, KeyConfigError
from pm_shared.keys.store import KeyNotFoundError, Permissions

SETTING = base64.b64encode(bytes(range(32))).decode()
USER = Permissions(operations=frozenset({"P2P", "SBP_TOPUP"}), owners=frozenset({"u-1", "u-2"}))
ANY = Permissions(operations=frozenset({"*"}), owners=None, admin=True)


@pytest.fixture
def cipher() -> Cipher:
    return Cipher.from_setting(SETTING)


# crypto


def test_encrypt_decrypt_round_trip_with_a_fresh_nonce_each_time(cipher: Cipher) -> None:
    blob = cipher.encrypt("s3cret", key_id="pk_a")
    again = cipher.encrypt("s3cret", key_id="pk_a")

    assert cipher.decrypt(blob, key_id="pk_a") == "s3cret"
    assert blob != again and blob[:12] != again[:12]
    assert b"s3cret" not in blob


def test_a_ciphertext_does_not_decrypt_for_another_key_id(cipher: Cipher) -> None:
    blob = cipher.encrypt("s3cret", key_id="pk_a")

    with pytest.raises(DecryptionError) as caught:
        cipher.decrypt(blob, key_id="pk_b")
    assert "s3cret" not in str(caught.value)


def test_a_ciphertext_does_not_decrypt_under_another_encryption_key(cipher: Cipher) -> None:
    other = Cipher.from_setting(base64.b64encode(os.urandom(32)).decode())
    blob = cipher.encrypt("s3cret", key_id="pk_a")

    with pytest.raises(DecryptionError, match="PM_KEY_ENCRYPTION_KEY"):
        other.decrypt(blob, key_id="pk_a")
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob[:-1] + bytes([blob[-1] ^ 1]), key_id="pk_a")
    with pytest.raises(DecryptionError):
        cipher.decrypt(blob[:12], key_id="pk_a")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "not base64 at all!",
        base64.b64encode(os.urandom(16)).decode(),
        base64.b64encode(os.urandom(33)).decode(),
    ],
)
def test_a_missing_or_invalid_setting_is_a_key_config_error_naming_the_variable(value: str) -> None:
    with pytest.raises(KeyConfigError, match="PM_KEY_ENCRYPTION_KEY") as caught:
        Cipher.from_setting(value)
    assert isinstance(caught.value, ValueError)
    if value.strip():
        assert value.strip() not in str(caught.value)


def test_a_missing_setting_points_at_the_existing_key_and_never_at_making_one() -> None:
    # With service keys stored, a new key would make every stored secret unreadable.
    with pytest.raises(KeyConfigError) as caught:
        Cipher.from_setting("")
    message = str(caught.value)
    assert "the key the stored service-key secrets were encrypted with" in message
    assert ".pm/env" in message
    assert not any(word in message for word in ("urandom", "generate", "python3", "new key"))


def test_the_setting_may_be_url_safe_base64() -> None:
    raw = bytes([0xFB, 0xFF] * 16)
    standard = Cipher.from_setting(base64.b64encode(raw).decode())
    urlsafe = Cipher.from_setting(base64.urlsafe_b64encode(raw).decode())

    assert urlsafe.decrypt(standard.encrypt("x", key_id="k"), key_id="k") == "x"


# permissions


def test_permissions_json_round_trip() -> None:
    for p in (USER, ANY, Permissions(operations=frozenset(), owners=frozenset())):
        stored = p.to_json()
        assert Permissions.from_json(stored) == p
        assert Permissions.from_json(msgspec.json.encode(stored).decode()) == p
    assert USER.to_json() == {"operations": ["P2P", "SBP_TOPUP"], "owners": ["u-1", "u-2"], "admin": False}
    assert ANY.to_json() == {"operations": ["*"], "owners": None, "admin": True}
    with pytest.raises(msgspec.ValidationError):
        Permissions.from_json({"owners": None})


def test_permissions_allow_listed_operations_and_owners_only() -> None:
    assert USER.allows_operation("P2P") and USER.allows_operation("SBP_TOPUP")
    assert not USER.allows_operation("ADJUSTMENT")
    assert USER.allows_owner("u-1") and not USER.allows_owner("u-3")
    assert ANY.allows_operation("ADJUSTMENT") and ANY.allows_owner("anyone")


# store


def test_new_key_ids_are_pk_and_24_hex() -> None:
    ids = {store.new_key_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(re.fullmatch(r"pk_[0-9a-f]{24}", i) for i in ids)


async def test_create_stores_only_the_encrypted_secret_and_lists_and_gets_the_key(
    db_conn: Conn, cipher: Cipher
) -> None:
    key, secret = await store.create_key(db_conn, cipher, permissions=USER, description="shop")

    assert re.fullmatch(r"pk_[0-9a-f]{24}", key.key_id)
    assert len(secret) >= 43
    assert (key.status, key.permissions, key.description) == ("active", USER, "shop")
    assert key.rotated_at is key.deactivated_at is key.last_used_at is key.previous_valid_until is None
    stored = await db_conn.fetchval(
        "SELECT secret_encrypted FROM pm.service_key WHERE key_id = $1", key.key_id
    )
    assert secret.encode() not in stored
    assert cipher.decrypt(stored, key_id=key.key_id) == secret

    other, _ = await store.create_key(db_conn, cipher, permissions=ANY)
    listed = await store.list_keys(db_conn)
    # Oldest first; inside one transaction both have the same created_at, so by key id.
    assert [k for k in listed if k.key_id in (key.key_id, other.key_id)] == sorted(
        [key, other], key=lambda k: k.key_id
    )
    assert await store.get_key(db_conn, key.key_id) == key
    assert await store.get_key(db_conn, "pk_" + "f" * 24) is None
    assert await store.verification_secrets(db_conn, cipher, key.key_id) == (key, [secret])
    assert await store.verification_secrets(db_conn, cipher, "pk_" + "f" * 24) is None


async def test_rotate_keeps_the_previous_secret_only_during_the_grace_period(
    db_pool: Pool, cipher: Cipher
) -> None:
    # A pool connection, not the rolled-back transaction: now() must move between statements.
    async with db_pool.acquire() as conn:
        key, first = await store.create_key(conn, cipher, permissions=USER)
        rotated, second = await store.rotate_key(conn, cipher, key.key_id, grace_s=0.5)

        assert second != first
        assert rotated.rotated_at is not None and rotated.previous_valid_until is not None
        assert timedelta(0) < rotated.previous_valid_until - rotated.rotated_at <= timedelta(seconds=0.5)
        found = await store.verification_secrets(conn, cipher, key.key_id)
        assert found is not None and found[1] == [second, first]

        await asyncio.sleep(0.7)
        found = await store.verification_secrets(conn, cipher, key.key_id)
        assert found is not None and found[1] == [second]


async def test_rotate_with_no_grace_invalidates_the_previous_secret_at_once(
    db_conn: Conn, cipher: Cipher
) -> None:
    key, first = await store.create_key(db_conn, cipher, permissions=USER)
    rotated, second = await store.rotate_key(db_conn, cipher, key.key_id, grace_s=0)

    assert rotated.previous_valid_until is None
    assert await store.verification_secrets(db_conn, cipher, key.key_id) == (rotated, [second])
    row = await db_conn.fetchrow(
        "SELECT previous_encrypted, previous_valid_until FROM pm.service_key WHERE key_id = $1", key.key_id
    )
    assert row is not None and tuple(row) == (None, None)
    del first


async def test_rotate_and_deactivate_an_unknown_key_raise_key_not_found(
    db_conn: Conn, cipher: Cipher
) -> None:
    missing = "pk_" + "f" * 24
    with pytest.raises(KeyNotFoundError, match=missing):
        await store.rotate_key(db_conn, cipher, missing, grace_s=10)
    with pytest.raises(KeyNotFoundError, match=missing):
        await store.deactivate_key(db_conn, missing)


async def test_a_deactivated_key_has_no_secrets(db_conn: Conn, cipher: Cipher) -> None:
    key, _ = await store.create_key(db_conn, cipher, permissions=USER)
    await store.rotate_key(db_conn, cipher, key.key_id, grace_s=3600)

    off = await store.deactivate_key(db_conn, key.key_id)

    assert off.status == "inactive" and off.deactivated_at is not None
    assert await store.verification_secrets(db_conn, cipher, key.key_id) == (off, [])
    assert (await store.deactivate_key(db_conn, key.key_id)).deactivated_at == off.deactivated_at


async def test_a_secret_stored_under_another_encryption_key_is_not_returned(
    db_conn: Conn, cipher: Cipher
) -> None:
    key, _ = await store.create_key(db_conn, cipher, permissions=USER)
    other = Cipher.from_setting(base64.b64encode(os.urandom(32)).decode())

    with pytest.raises(DecryptionError):
        await store.verification_secrets(db_conn, other, key.key_id)


async def test_touch_writes_last_used_at_at_most_once_a_minute(db_pool: Pool, cipher: Cipher) -> None:
    async with db_pool.acquire() as conn:
        key, _ = await store.create_key(conn, cipher, permissions=USER)
        await store.touch(conn, key.key_id)
        first = await store.get_key(conn, key.key_id)
        assert first is not None and first.last_used_at is not None

        await asyncio.sleep(0.05)
        await store.touch(conn, key.key_id)
        again = await store.get_key(conn, key.key_id)
        assert again is not None and again.last_used_at == first.last_used_at

        await conn.execute(
            "UPDATE pm.service_key SET last_used_at = now() - interval '61 seconds' WHERE key_id = $1",
            key.key_id,
        )
        await store.touch(conn, key.key_id)
        later = await store.get_key(conn, key.key_id)
        assert later is not None and later.last_used_at is not None
        assert later.last_used_at > first.last_used_at

        await store.touch(conn, "pk_" + "e" * 24)  # an unknown key is not an error


@pytest.mark.parametrize(
    "permissions",
    [
        "{}",
        '{"operations": "P2P", "admin": false}',
        '{"operations": [], "admin": "no"}',
        '{"operations": [], "admin": false, "owners": "u-1"}',
    ],
)
async def test_the_database_refuses_permissions_of_the_wrong_shape(db_conn: Conn, permissions: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        await db_conn.execute(
            "INSERT INTO pm.service_key (key_id, secret_encrypted, permissions) VALUES ($1, $2, $3::jsonb)",
            store.new_key_id(),
            b"x",
            permissions,
        )
