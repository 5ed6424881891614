"""HMAC signature of a webhook body, in the algorithm/encoding the sandbox is configured with.

The real algorithm is not public (wedof-api.md §5), so receivers must be configurable; the sandbox lets
tests exercise each variant: ``hex`` (default), ``prefixed`` (``sha256=<hex>``) and ``base64``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

ALGORITHMS = ("sha256", "sha512")
ENCODINGS = ("hex", "prefixed", "base64")


def sign(body: bytes, secret: str, algorithm: str = "sha256", encoding: str = "hex") -> str:
    digest = hmac.new(secret.encode(), body, getattr(hashlib, algorithm)).digest()
    if encoding == "base64":
        return base64.b64encode(digest).decode()
    if encoding == "prefixed":
        return f"{algorithm}={digest.hex()}"
    return digest.hex()
