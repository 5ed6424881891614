"""What every admin view shares: its database session and the audited task sender."""

from __future__ import annotations

from contextlib import contextmanager

from flask import current_app

from bdc.db import session_scope


@contextmanager
def db_session():
    """The request's unit of work on the app's database (commit on success, rollback on error)."""
    with session_scope(current_app.config["DATABASE_URL"]) as session:
        yield session
