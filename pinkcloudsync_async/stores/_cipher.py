"""Encryption at rest of what the fleet stores: AES-256-GCM, pure (no I/O).

A sealed value is `b"pcs1" + key id (16 ASCII hex) + nonce (12 bytes) + ciphertext`,
where the ciphertext carries GCM's 16-byte tag. The associated data binds it to
the Redis key it was written under and to its key id: a value copied to another
key, tampered with, or sealed under a key this reader does not hold does not open
(`UnreadableEntry`), and the store treats it as a miss.

Keys are 32 random bytes, given as their URL-safe base64 text
(`base64.urlsafe_b64encode(os.urandom(32))`). A key id is a short hash of the key,
so a reader finds the right key among the current and the previous ones.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence

from .._exceptions import ConfigurationError

__all__ = ["PlaintextCodec", "TokenCipher", "UnreadableEntry", "parse_keys"]

_SEALED = b"pcs1"
_PLAIN = b"pcs0"
_ID_LENGTH = 16
_NONCE_LENGTH = 12
KEY_LENGTH = 32


class UnreadableEntry(Exception):
    """A stored value that does not open; `reason` says why, with no secret in it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_keys(text: str | bytes | Sequence[str | bytes]) -> list[bytes]:
    """Keys from their URL-safe base64 texts: one text, a comma-separated list
    (the current key first), or a sequence of texts. Raises ConfigurationError,
    naming the position of a bad key but never its text."""
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    items = text.split(",") if isinstance(text, str) else list(text)
    keys = []
    for position, item in enumerate(items, start=1):
        raw = item.decode("ascii", "replace") if isinstance(item, bytes) else item
        if not isinstance(raw, str):
            raise ConfigurationError(f"Encryption key #{position} is not a string.")
        raw = raw.strip()
        try:
            key = base64.urlsafe_b64decode(raw.encode("ascii"))
        except (binascii.Error, ValueError, UnicodeEncodeError):
            key = b""
        if len(key) != KEY_LENGTH:
            raise ConfigurationError(
                f"Encryption key #{position} is not the URL-safe base64 text of "
                f"{KEY_LENGTH} bytes (make one with "
                "base64.urlsafe_b64encode(os.urandom(32)))."
            )
        keys.append(key)
    if not keys:
        raise ConfigurationError("No encryption key given.")
    return keys


def key_id(key: bytes) -> bytes:
    """The id a sealed value names its key by: 16 hex digits of a hash of the key."""
    digest = hashlib.sha256(b"pinkcloudsync token store key id\x00" + key).hexdigest()
    return digest[:_ID_LENGTH].encode("ascii")


def _associated_data(redis_key: str, kid: bytes) -> bytes:
    return b"pinkcloudsync\x00" + redis_key.encode() + b"\x00" + kid


class TokenCipher:
    """Seals with the current key (the first); opens with any of the keys given.

    `keys` are 32-byte keys, current first, then previous ones kept for reading
    during a rotation. `repr` shows key ids only.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if not keys:
            raise ConfigurationError("No encryption key given.")
        self._by_id = {key_id(key): AESGCM(key) for key in keys}
        self.current_id = key_id(keys[0])
        self._current = self._by_id[self.current_id]

    def __repr__(self) -> str:
        ids = ", ".join(kid.decode() for kid in self._by_id)
        return f"TokenCipher(key_ids=[{ids}])"

    def seal(self, redis_key: str, plaintext: bytes) -> bytes:
        """`plaintext` encrypted for `redis_key` under the current key."""
        nonce = os.urandom(_NONCE_LENGTH)
        sealed = self._current.encrypt(
            nonce, plaintext, _associated_data(redis_key, self.current_id)
        )
        return _SEALED + self.current_id + nonce + sealed

    def open(self, redis_key: str, value: bytes) -> bytes:
        """The plaintext of a value read from `redis_key`; raises UnreadableEntry."""
        from cryptography.exceptions import InvalidTag

        if not value.startswith(_SEALED):
            raise UnreadableEntry("not an encrypted entry")
        kid = value[len(_SEALED) : len(_SEALED) + _ID_LENGTH]
        rest = value[len(_SEALED) + _ID_LENGTH :]
        aead = self._by_id.get(kid)
        if aead is None:
            raise UnreadableEntry(f"written under an unknown key id {kid.decode('ascii', '?')!r}")
        if len(rest) <= _NONCE_LENGTH:
            raise UnreadableEntry("truncated")
        try:
            return aead.decrypt(
                rest[:_NONCE_LENGTH], rest[_NONCE_LENGTH:], _associated_data(redis_key, kid)
            )
        except InvalidTag:
            raise UnreadableEntry(
                "failed authentication (tampered with, or copied from another key)"
            ) from None


class PlaintextCodec:
    """No encryption, for a user who explicitly allowed unencrypted storage."""

    def __repr__(self) -> str:
        return "PlaintextCodec()"

    def seal(self, redis_key: str, plaintext: bytes) -> bytes:
        return _PLAIN + plaintext

    def open(self, redis_key: str, value: bytes) -> bytes:
        if not value.startswith(_PLAIN):
            raise UnreadableEntry("not an unencrypted entry (is a key missing?)")
        return value[len(_PLAIN) :]
