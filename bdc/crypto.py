"""Encryption at rest for connection secrets (Wedof API keys, webhook secrets).

Fernet (AES-128-CBC + HMAC) from ``cryptography``; ``SECRET_ENCRYPTION_KEY`` may hold several
comma-separated keys so an operator can rotate: the first key encrypts, every key decrypts.
"""

from __future__ import annotations

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bdc.settings import get_settings


class SecretDecryptionError(RuntimeError):
    """A stored secret cannot be decrypted with the configured keys (wrong or rotated-out key)."""


@lru_cache(maxsize=8)
def _cipher(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


def encrypt_secret(plain: str, keys: str | None = None) -> str:
    return _cipher(keys or get_settings().secret_encryption_key).encrypt(plain.encode()).decode()


def decrypt_secret(token: str, keys: str | None = None) -> str:
    try:
        return _cipher(keys or get_settings().secret_encryption_key).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretDecryptionError(
            "a stored secret cannot be decrypted: SECRET_ENCRYPTION_KEY does not hold the key it was encrypted with"
        ) from None
