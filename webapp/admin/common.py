"""What every admin view shares: its database session and safe lookups by id."""

from __future__ import annotations

from contextlib import contextmanager

from flask import current_app

from bdc.db import session_scope


@contextmanager
def db_session():
    """The request's unit of work on the app's database (commit on success, rollback on error)."""
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        yield session


# Primary keys are 32-bit integers on PostgreSQL; a larger id cannot exist, and asking the
# database for one would raise (a 500) instead of answering "not found".
MAX_ID = 2**31 - 1


def get_by_id(session, model, object_id: int):
    """``session.get`` that answers None for ids no row can have."""
    if not 0 < object_id <= MAX_ID:
        return None
    return session.get(model, object_id)
