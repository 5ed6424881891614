"""``?page=&per_page=`` paging: every list answers ``{items, page, per_page, total, pages}``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from webapp.errors import ApiError

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100


def _positive(name: str, default: int, maximum: int | None = None) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or len(raw) > 9 or int(raw) < 1:
        raise ApiError(400, "invalid_parameter", f"{name} must be a whole number of at least 1.")
    value = int(raw)
    if maximum is not None and value > maximum:
        raise ApiError(400, "invalid_parameter", f"{name} must be at most {maximum}.")
    return value


def page_args() -> tuple[int, int]:
    return _positive("page", 1), _positive("per_page", DEFAULT_PER_PAGE, MAX_PER_PAGE)


def paginate(session: Session, stmt: Select, serialize: Callable[[Any], dict]) -> dict[str, Any]:
    """Run ``stmt`` (already ordered) one page at a time and serialize the rows."""
    page, per_page = page_args()
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    rows = session.execute(stmt.limit(per_page).offset((page - 1) * per_page)).all()
    items = [serialize(row[0] if len(row) == 1 else row) for row in rows]
    pages = (total + per_page - 1) // per_page
    return {"items": items, "page": page, "per_page": per_page, "total": total, "pages": pages}
