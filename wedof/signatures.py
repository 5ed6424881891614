"""Webhook signature helpers for ``X-Wedof-Signature``.

Wedof has not published its signature scheme, so we sign and verify an HMAC of the *raw* request
body keyed with the webhook secret, and accept the encodings seen in third-party receivers:
plain hex (any case), an ``<algorithm>=<hex>`` prefix, or base64. Verification never raises on a
hostile header: it answers False. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

SUPPORTED_ALGORITHMS = ("sha256", "sha512")
SUPPORTED_ENCODINGS = ("hex", "prefixed", "base64")

# A header longer than this cannot be any supported encoding of a SHA-512 digest; refuse it early
# so a huge header costs nothing.
_MAX_HEADER_LENGTH = 256


def check_algorithm(algorithm: str) -> str:
    """Return the normalised algorithm name, or raise ValueError (a configuration error)."""
    normalised = str(algorithm).strip().lower()
    if normalised not in SUPPORTED_ALGORITHMS:
        raise ValueError(f"unsupported signature algorithm {algorithm!r}; use one of {SUPPORTED_ALGORITHMS}")
    return normalised


def _secret_bytes(secret: str | bytes) -> bytes:
    # An empty key would let anyone forge signatures: treat it as a configuration error.
    if isinstance(secret, bytes | bytearray) and secret:
        return bytes(secret)
    if isinstance(secret, str) and secret:
        return secret.encode("utf-8")
    raise ValueError("a non-empty webhook secret (str or bytes) is required")


def _digest(secret: str | bytes, body: bytes, algorithm: str) -> bytes:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise TypeError("body must be the raw request bytes")
    return hmac.new(_secret_bytes(secret), bytes(body), algorithm).digest()


def compute_signature(
    secret: str | bytes, body: bytes, algorithm: str = "sha256", encoding: str = "hex"
) -> str:
    """Sign ``body`` the way a sender would: ``hex`` (default), ``prefixed`` (``sha256=<hex>``) or ``base64``."""
    algorithm = check_algorithm(algorithm)
    digest = _digest(secret, body, algorithm)
    if encoding == "hex":
        return digest.hex()
    if encoding == "prefixed":
        return f"{algorithm}={digest.hex()}"
    if encoding == "base64":
        return base64.b64encode(digest).decode("ascii")
    raise ValueError(f"unsupported signature encoding {encoding!r}; use one of {SUPPORTED_ENCODINGS}")


def _decode_header(header_value: str, algorithm: str) -> bytes | None:
    """The digest bytes a header claims, or None when it is no valid encoding for ``algorithm``."""
    value = header_value.strip()
    prefix, sep, rest = value.partition("=")
    # "sha256=<hex>" - only the configured algorithm's prefix is accepted, so a sender cannot
    # pick a weaker or different algorithm than the one configured.
    if sep and prefix.lower() in SUPPORTED_ALGORITHMS and rest:
        if prefix.lower() != algorithm:
            return None
        value = rest.strip()
    size = hashlib.new(algorithm).digest_size
    if len(value) == size * 2:
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    try:
        decoded = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if len(decoded) == size else None


def verify_signature(
    secret: str | bytes, body: bytes, header_value: str | None, algorithm: str = "sha256"
) -> bool:
    """True only when ``header_value`` is a valid signature of the raw ``body`` under ``secret``.

    Raises ValueError for an unsupported algorithm or an empty secret (configuration), never for a
    bad header.
    """
    algorithm = check_algorithm(algorithm)
    if not isinstance(header_value, str) or not header_value or len(header_value) > _MAX_HEADER_LENGTH:
        return False
    if not header_value.isascii():
        return False
    claimed = _decode_header(header_value, algorithm)
    if claimed is None:
        return False
    return hmac.compare_digest(_digest(secret, body, algorithm), claimed)
