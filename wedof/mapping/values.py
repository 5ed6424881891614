"""Read one scalar of a Wedof payload defensively: text, email, numbers, dates.

Every reader returns a clean value or ``None``; none of them raises, whatever the type it is given.
That is what lets :mod:`wedof.mapping.folder` turn a hostile folder into clean data before a single
row is touched. Placeholders such as ``"string"`` (left in Wedof's own samples) count as missing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import UTC, date, datetime
from typing import Any

# Values people and API samples put where they have nothing to say.
PLACEHOLDERS = frozenset(
    {"", "string", "null", "none", "nil", "undefined", "n/a", "na", "nan", "-", "--", "?"}
)

# Deliberately loose: one @, no spaces, a dot in the domain. Wedof already validated the address.
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit; the column allows 320


def text(value: Any, max_length: int | None = None) -> str | None:
    """A trimmed string, or ``None`` for non-strings, blanks and placeholders; cut to ``max_length``."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    result = _storable(str(value)).strip()
    if result.lower() in PLACEHOLDERS:
        return None
    if max_length is not None and len(result) > max_length:
        result = result[:max_length].rstrip()
    return result or None


def short_text(value: Any, max_length: int) -> str | None:
    """Like :func:`text`, but a value longer than the column is garbage (a phone, a zip code): ``None``."""
    result = text(value)
    return result if result is not None and len(result) <= max_length else None


def email(value: Any) -> str | None:
    """A lower-cased, trimmed email address, or ``None`` when missing or not an address."""
    result = text(value)
    if result is None:
        return None
    result = result.lower()
    if len(result) > MAX_EMAIL_LENGTH or not _EMAIL.fullmatch(result):
        return None
    return result


def number(value: Any) -> float | None:
    """A finite number (int, float or numeric string); booleans and garbage are ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        value = value.strip().replace(",", ".")
    if not isinstance(value, int | float | str):
        return None
    try:
        result = float(value)
    except (ValueError, OverflowError):
        return None
    return result if math.isfinite(result) else None


def percent(value: Any) -> float | None:
    """A completion rate clamped to 0–100, or ``None`` when not a number."""
    result = number(value)
    return None if result is None else min(100.0, max(0.0, result))


def whole_percent(rate: float) -> int:
    """A rate rounded half up to a whole percent (Enrollment.progress is an integer)."""
    return int(math.floor(rate + 0.5))


def datetime_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from Wedof's ISO 8601 (``2024-03-15T14:26:51.842Z``); naive means UTC."""
    result = text(value, max_length=64)
    if result is None:
        return None
    if result[-1:] in ("z", "Z"):
        result = result[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(result)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):  # year 1 with a positive offset, and the like
        return None


def date_only(value: Any) -> date | None:
    """The calendar date of an ISO date or datetime (Wedof sends dates as midnight UTC datetimes)."""
    result = text(value, max_length=64)
    if result is None:
        return None
    if len(result) == 10:
        try:
            return date.fromisoformat(result)
        except ValueError:
            return None
    parsed = datetime_utc(result)
    return None if parsed is None else parsed.date()


def iso(value: datetime | None) -> str | None:
    """The ISO text of a datetime for JSON columns (Wedof's own millisecond Z format)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fold(value: str) -> str:
    """Lower-case without accents, for matching words in titles ("Compétences" ~ "competences")."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).casefold()


def _storable(value: str) -> str:
    """Drop what no database stores: NUL characters (PostgreSQL) and lone surrogates (UTF-8)."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value
