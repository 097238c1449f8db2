"""AES-256-GCM encryption of service-key secrets under PM_KEY_ENCRYPTION_KEY."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SETTING = "PM_KEY_ENCRYPTION_KEY"
KEY_BYTES = 32
# 96 bits: the nonce size GCM is specified for; random per encryption, stored before the ciphertext.
NONCE_BYTES = 12


class KeyConfigError(ValueError):
    """PM_KEY_ENCRYPTION_KEY is missing or is not the base64 of 32 bytes."""


class DecryptionError(ValueError):
    """A stored secret does not decrypt: another encryption key, another row, or a damaged value."""


class Cipher:
    """Encrypts and decrypts secrets; the key id is authenticated with each, so a ciphertext
    stays on its row."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise KeyConfigError(f"{SETTING} must be {KEY_BYTES} bytes, got {len(key)}")
        self._aead = AESGCM(key)

    @classmethod
    def from_setting(cls, value: str) -> Cipher:
        """A cipher from the setting's value: base64 (standard or URL-safe) of 32 random bytes."""
        text = value.strip()
        if not text:
            # Never suggest making one here: with service keys stored, a new key makes every stored
            # secret unreadable. Only the CLI, which can look at pm.service_key, offers to.
            raise KeyConfigError(
                f"{SETTING} is not set: it must be the key the stored service-key secrets were encrypted "
                f"with (the base64 of {KEY_BYTES} bytes; a local fleet keeps it in .pm/env)"
            )
        try:
            key = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            # The value itself is a secret: never repeat it.
            raise KeyConfigError(f"{SETTING} is not valid base64") from None
        if len(key) != KEY_BYTES:
            raise KeyConfigError(f"{SETTING} must decode to {KEY_BYTES} bytes, got {len(key)}")
        return cls(key)

    def encrypt(self, secret: str, *, key_id: str) -> bytes:
        """`nonce || ciphertext+tag`, with `key_id` as associated data."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), key_id.encode())

    def decrypt(self, blob: bytes, *, key_id: str) -> str:
        """The secret in `blob`; DecryptionError when it was not encrypted by this key for `key_id`."""
        if len(blob) <= NONCE_BYTES:
            raise DecryptionError(f"stored secret of {key_id} is too short to be a ciphertext")
        try:
            plain = self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], key_id.encode())
        except InvalidTag:
            raise DecryptionError(
                f"stored secret of {key_id} does not decrypt: {SETTING} differs from the one it was "
                "stored with, or the value was moved or damaged"
            ) from None
        return plain.decode()
