"""One helper to write the audit log, so every admin and sync action is recorded the same way.

A change is recorded as who (``actor``), what (``action``, ``target``) and, under ``details["changes"]``,
each changed field's old and new values, ``{"field": {"old": ..., "new": ...}}``; a secret's values are
never written, only the word ``"changed"`` (:func:`changes`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy.orm import Session

from bdc.models import AuditLog
from bdc.types import json_safe

CHANGED = "changed"  # what a secret's old and new values are recorded as


def changes(before: Mapping, after: Mapping, *, secrets: Iterable[str] = (), fields: Iterable[str] | None = None
            ) -> dict:
    """The fields whose value differs between ``before`` and ``after``: old and new, or "changed" for secrets."""
    secret_names = set(secrets)
    names = list(fields) if fields is not None else sorted(set(before) | set(after))
    found: dict = {}
    for name in names:
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        found[name] = CHANGED if name in secret_names else {"old": json_safe(old), "new": json_safe(new)}
    return found


def note_transition(session: Session, target: tuple[str, object], old, new) -> None:
    """Remember a status change a state machine just made, for the next audit row about ``target``.

    The state machines move a row with one guarded UPDATE; the audit row is written by their caller
    a moment later in the same transaction, and gets ``changes["status"]`` from here.
    """
    session.info.setdefault(_TRANSITIONS, {})[(target[0], str(target[1]))] = (old, new)


_TRANSITIONS = "audit_transitions"


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    tenant_id: int | None = None,
    target: tuple[str, object] | None = None,
    details: dict | None = None,
    changes: dict | None = None,
) -> AuditLog:
    """Add an audit row to the caller's transaction (it commits with the change it describes)."""
    details = dict(details or {})
    noted = session.info.get(_TRANSITIONS, {}).pop((target[0], str(target[1])), None) if target else None
    if noted is not None and noted[0] != noted[1]:
        changes = {"status": {"old": json_safe(noted[0]), "new": json_safe(noted[1])}, **(changes or {})}
    if changes:
        details["changes"] = changes
    entry = AuditLog(
        tenant_id=tenant_id,
        actor=actor,
        action=action,
        target_type=target[0] if target else None,
        target_id=str(target[1]) if target else None,
        details=details,
    )
    session.add(entry)
    return entry
