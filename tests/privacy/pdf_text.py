"""The text a PDF carries, read from its (possibly deflated) content streams: to look for a name in it."""

from __future__ import annotations

import re
import zlib

_STREAM = re.compile(rb"stream\r?\n(.*?)\r?\nendstream", re.S)


def pdf_text(data: bytes) -> bytes:
    chunks = [data]
    for stream in _STREAM.findall(data):
        try:
            chunks.append(zlib.decompress(stream))
        except zlib.error:
            chunks.append(stream)
    return b"\n".join(chunks)
