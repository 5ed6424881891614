"""Typed errors raised by the Wedof client.

Each HTTP failure maps to one class so callers (Celery tasks) can decide between retrying and
dead-lettering by reading ``error.transient`` instead of parsing messages. Errors carry the
status, Wedof's ``detail`` and ``violations`` and a short excerpt of the response body, and
never the API key.
"""

from __future__ import annotations

import email.utils
import json
import math
from datetime import UTC, datetime
from typing import Any

from bdc.types import utcnow

# Enough of a body to diagnose a failure in a log line, not enough to dump a whole folder.
BODY_EXCERPT_LENGTH = 500
REDACTED = "[REDACTED]"


class WedofError(Exception):
    """Any failure talking to Wedof. ``transient`` says whether retrying later may succeed."""

    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str | None = None,
        violations: list[dict[str, str]] | None = None,
        body_excerpt: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.detail = detail
        self.violations = list(violations or [])
        self.body_excerpt = body_excerpt
        self.method = method
        self.path = path

    def __reduce__(self):
        # Keyword-only constructor arguments are lost by the default exception pickling, and
        # Celery pickles exceptions into results: rebuild from the instance's attributes.
        return (_rebuild_error, (type(self), self.message, dict(self.__dict__)))

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        status = f"HTTP {self.status}: " if self.status is not None else ""
        return f"{status}{self.message}{where}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status!r}, message={self.message!r})"


def _rebuild_error(cls: type[WedofError], message: str, attributes: dict[str, Any]) -> WedofError:
    error = cls.__new__(cls)
    Exception.__init__(error, message)
    error.__dict__.update(attributes)
    return error


class WedofAuthenticationError(WedofError):
    """401: the API key is missing, wrong or revoked."""


class WedofForbiddenError(WedofError):
    """403: the key is valid but the subscription or organism does not allow this call."""


class WedofNotFoundError(WedofError):
    """404: no such folder / resource for this organism."""


class WedofValidationError(WedofError):
    """400/409/422: Wedof refused the request (bad field, transition refused by the state machine)."""


class WedofRateLimitedError(WedofError):
    """429: too many requests; ``retry_after`` (seconds) when Wedof said how long to wait."""

    transient = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class WedofServerError(WedofError):
    """5xx: Wedof failed; usually worth retrying later."""

    transient = True


class WedofNetworkError(WedofError):
    """No usable HTTP response: connection refused/reset, timeout, truncated response.

    ``not_sent`` is True when the connection was never established, so even a non-idempotent
    request (a transition) cannot have reached Wedof and is safe to send again.
    """

    transient = True

    def __init__(self, message: str, *, not_sent: bool = False, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.not_sent = not_sent


class WedofProtocolError(WedofError):
    """A 2xx whose body is not the JSON shape the endpoint promises (e.g. a list that is not a list)."""


_STATUS_CLASSES: dict[int, type[WedofError]] = {
    400: WedofValidationError,
    401: WedofAuthenticationError,
    403: WedofForbiddenError,
    404: WedofNotFoundError,
    409: WedofValidationError,
    422: WedofValidationError,
    429: WedofRateLimitedError,
}


def error_class_for_status(status: int) -> type[WedofError]:
    """The error class for a non-2xx HTTP status (other 4xx fall back to the base class)."""
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if 500 <= status <= 599:
        return WedofServerError
    return WedofError


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date); None if unusable."""
    if value is None:
        return None
    value = str(value).strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = None
    if seconds is not None:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # HTTP-dates are GMT by definition
        when = when.replace(tzinfo=UTC)
    now = now or utcnow()
    return max(0.0, (when - now).total_seconds())


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every non-empty secret replaced, so an echoed key never reaches a log."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def body_excerpt(text: str | None, secrets: tuple[str, ...] = ()) -> str | None:
    """The first characters of a response body, secrets redacted."""
    if not text:
        return None
    return redact(text[: BODY_EXCERPT_LENGTH + 200], secrets)[:BODY_EXCERPT_LENGTH]


def parse_problem(text: str | None) -> tuple[str | None, list[dict[str, str]]]:
    """``detail`` and ``violations`` from a Symfony/API-Platform error body; tolerant of anything."""
    if not text:
        return None, []
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        return None, []
    if not isinstance(data, dict):
        return None, []
    detail = data.get("detail")
    if detail is None:
        detail = data.get("message") or data.get("title")
    detail = str(detail) if detail is not None else None
    violations = []
    raw = data.get("violations")
    if isinstance(raw, list):
        for item in raw:
            if isinstance(item, dict):
                violations.append(
                    {
                        "propertyPath": str(item.get("propertyPath") or ""),
                        "title": str(item.get("title") or item.get("message") or ""),
                    }
                )
    return detail, violations


def error_from_response(
    status: int,
    text: str | None,
    headers: Any = None,
    *,
    method: str | None = None,
    path: str | None = None,
    secrets: tuple[str, ...] = (),
) -> WedofError:
    """Build the typed error for a non-2xx response."""
    cls = error_class_for_status(status)
    detail, violations = parse_problem(text)
    if detail is not None:
        detail = redact(detail, secrets)
    message = detail or f"Wedof answered HTTP {status}"
    kwargs: dict[str, Any] = {
        "status": status,
        "detail": detail,
        "violations": violations,
        "body_excerpt": body_excerpt(text, secrets),
        "method": method,
        "path": path,
    }
    if cls is WedofRateLimitedError:
        retry_after = parse_retry_after((headers or {}).get("Retry-After"))
        return WedofRateLimitedError(message, retry_after=retry_after, **kwargs)
    return cls(message, **kwargs)
