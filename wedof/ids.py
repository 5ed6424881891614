"""The one rule for a registration folder number (``externalId``), wherever one comes in.

A folder number reaches us in webhook bodies and envelopes, in listings, in admin requests, and
goes out as a path segment of a Wedof URL. Letters, digits and ``_ . : -`` only (never a slash, a
``?`` or ``..``), so a hostile id can neither steer a call to another endpoint nor break a column;
at most 52 characters, because keys derived from it (``<number>:bilan-report``) must fit the
64-character ``external_id`` columns. Real Wedof numbers are about ten digits.
"""

from __future__ import annotations

import re
from typing import Any

MAX_FOLDER_NUMBER_LENGTH = 52
_FOLDER_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
RULE = f"1 to {MAX_FOLDER_NUMBER_LENGTH} letters, digits or . _ : - characters, starting with a letter or digit"


def folder_number(value: Any) -> str | None:
    """``value`` as a clean folder number (a JSON number is accepted), or None when it is not one."""
    if isinstance(value, bool):  # bool is an int subclass; True is no folder number
        return None
    if isinstance(value, int):
        value = str(value)
    if not isinstance(value, str):
        return None
    value = value.strip()
    if not value or len(value) > MAX_FOLDER_NUMBER_LENGTH or ".." in value or not _FOLDER_NUMBER.fullmatch(value):
        return None
    return value
