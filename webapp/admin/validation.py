"""Small, strict readers for JSON bodies and query parameters: wrong input is a 400/422, never a 500."""

from __future__ import annotations

from typing import Any

from flask import request

from webapp.errors import ApiError

_MISSING = object()


def json_object(*, allow_empty: bool = False) -> dict[str, Any]:
    """The request body as a JSON object; 400 when unreadable or not an object."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise ApiError(400, "invalid_json", "A JSON object body is required.")
    try:
        body = request.get_json(force=True, silent=False)
    except Exception:  # werkzeug raises BadRequest subclasses for any decoding problem
        raise ApiError(400, "invalid_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object.")
    return body


def reject_unknown(body: dict[str, Any], allowed: set[str], status: int = 422) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(status, "validation_error", f"Unknown field(s): {', '.join(unknown)[:200]}.",
                       fields={name[:100]: "unknown field" for name in unknown[:20]})


def field(body: dict[str, Any], name: str, kind: type | tuple[type, ...], *, default: Any = _MISSING,
          choices: tuple | None = None, minimum: float | None = None, maximum: float | None = None,
          max_length: int | None = None, nullable: bool = False, status: int = 422) -> Any:
    """Read ``body[name]`` checking type, choices, range and length (``status``, 422, with the field named)."""
    if name not in body:
        if default is _MISSING:
            raise ApiError(status, "validation_error", f"{name} is required.", fields={name: "required"})
        return default
    value = body[name]
    if value is None and nullable:
        return None
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON true is never a number here.
    if isinstance(value, bool) and bool not in kinds:
        value_ok = False
    else:
        value_ok = isinstance(value, kinds)
    if not value_ok:
        expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
        raise ApiError(status, "validation_error", f"{name} must be {expected}.", fields={name: f"expected {expected}"})
    if choices is not None and value not in choices:
        raise ApiError(status, "validation_error", f"{name} must be one of: {', '.join(map(str, choices))}.",
                       fields={name: "not an allowed value"})
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ApiError(status, "validation_error", f"{name} must be between {minimum} and {maximum}.",
                       fields={name: "out of range"})
    if max_length is not None and isinstance(value, str) and len(value) > max_length:
        raise ApiError(status, "validation_error", f"{name} is longer than {max_length} characters.",
                       fields={name: "too long"})
    return value


_TYPE_NAMES = {str: "a string", int: "an integer", bool: "a boolean", float: "a number", dict: "an object",
               list: "a list"}


def query_choice(name: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """An optional query parameter restricted to ``choices`` (400 otherwise)."""
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if value not in choices:
        raise ApiError(400, "invalid_parameter", f"{name} must be one of: {', '.join(choices)}.")
    return value


def query_text(name: str, max_length: int = 120) -> str | None:
    value = request.args.get(name)
    if value is None or value == "":
        return None
    if len(value) > max_length:
        raise ApiError(400, "invalid_parameter", f"{name} is longer than {max_length} characters.")
    return value
