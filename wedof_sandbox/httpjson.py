"""Small HTTP helpers shared by the API and control blueprints."""

from __future__ import annotations

import json

from flask import Response, request

from .errors import ApiError


def raw_json(body: bytes, status: int = 200, headers: dict | None = None) -> Response:
    return Response(body, status=status, headers=headers, mimetype="application/json")


def json_response(obj, status: int = 200, headers: dict | None = None) -> Response:
    return raw_json(json.dumps(obj, ensure_ascii=False).encode(), status, headers)


def array_response(bodies: list[bytes], headers: dict | None = None) -> Response:
    return raw_json(b"[" + b",".join(bodies) + b"]", headers=headers)


def json_body(required: bool = False):
    """The request's JSON body, None when empty (unless required); 400 when unreadable."""
    data = request.get_data(cache=True)
    if not data.strip():
        if required:
            raise ApiError(400, "A JSON body is required.")
        return None
    try:
        return json.loads(data, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The request body is not valid JSON.") from None


def _reject_constant(name: str):
    # NaN and Infinity are not JSON: accepting them would make us serve invalid JSON later
    raise ValueError(f"{name} is not allowed")
