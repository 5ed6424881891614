"""What the chaos run checks once the dust settles: the data layer against the sandbox's truth, the
inbox against what the sandbox delivered, and the delivery-to-applied latencies.

Every function reads; none writes. Each returns plain dicts so the verdict is JSON as it stands.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import Beneficiary, Enrollment, EventStatus, Program, User, WebhookEvent
from wedof.mapping import enrollment_status_for
from wedof.mapping.values import datetime_utc, percent, whole_percent

OPEN_STATUSES = (EventStatus.RECEIVED, EventStatus.QUEUED, EventStatus.PROCESSING)
MAX_EXAMPLES = 10


def _expected(folder: dict) -> dict:
    rate = percent(folder.get("completionRate"))
    attendee = folder["attendee"]
    return {
        "status": enrollment_status_for(folder["state"]),
        "wedof_state": folder["state"],
        "progress": whole_percent(rate) if rate is not None else 0,
        "attendee": str(attendee["id"]),
        "first_name": attendee.get("firstName"),
        "last_name": attendee.get("lastName"),
        "program": folder["trainingActionInfo"]["externalId"],
    }


def compare_with_truth(tenant_id: int, truth: list[dict], acknowledged: dict[str, str] | None = None) -> dict:
    """Missing / duplicated / stale / mismatched rows of ``tenant_id`` against the full truth.

    - missing: a truth folder without an enrollment;
    - duplicated: more than one enrollment for a folder, more than one beneficiary for an attendee,
      or an enrollment for a folder the truth does not have;
    - stale: the stored ``wedof_last_update`` is older than the truth's ``lastUpdate`` (or unknown);
    - mismatched: lastUpdate right (or newer) but another field differs (status via the mapping
      table, wedof_state, progress, beneficiary/program link, names);
    - behind_acknowledged (when ``acknowledged`` maps externalId → newest lastUpdate the receiver
      acknowledged): rows older than a version we answered 2xx for, i.e. an acknowledged webhook
      whose effect is missing; the webhook path alone must keep this at 0.
    """
    with session_scope() as session:
        rows = session.execute(
            select(Enrollment.external_id, Enrollment.status, Enrollment.wedof_state, Enrollment.progress,
                   Enrollment.wedof_last_update, Beneficiary.external_id.label("attendee"),
                   User.first_name, User.last_name, Program.external_id.label("program"))
            .join(Beneficiary, Enrollment.beneficiary_id == Beneficiary.id)
            .join(User, Beneficiary.user_id == User.id)
            .join(Program, Enrollment.program_id == Program.id)
            .where(Enrollment.tenant_id == tenant_id)
        ).all()
        beneficiaries_per_attendee = Counter(session.scalars(
            select(Beneficiary.external_id).where(Beneficiary.tenant_id == tenant_id)).all())
        enrollment_count = session.scalar(
            select(func.count()).select_from(Enrollment).where(Enrollment.tenant_id == tenant_id))
    held: dict[str, list] = {}
    for row in rows:
        held.setdefault(row.external_id, []).append(row)
    missing, duplicated, stale, mismatched, behind = [], [], [], [], []
    for external_id, newest in (acknowledged or {}).items():
        copies = held.get(external_id)
        stored_update = _aware(copies[0].wedof_last_update) if copies else None
        if stored_update is None or stored_update < datetime_utc(newest):
            behind.append(f"{external_id}: stored {stored_update} < acknowledged {newest}")
    truth_ids = set()
    for folder in truth:
        external_id = folder["externalId"]
        truth_ids.add(external_id)
        copies = held.get(external_id, [])
        if not copies:
            missing.append(external_id)
            continue
        if len(copies) > 1:
            duplicated.append(f"{external_id}: {len(copies)} enrollments")
        row = copies[0]
        truth_update = datetime_utc(folder["lastUpdate"])
        stored_update = _aware(row.wedof_last_update)
        if stored_update is None or stored_update < truth_update:
            stale.append(f"{external_id}: stored {stored_update} < truth {folder['lastUpdate']}")
            continue
        expected = _expected(folder)
        actual = {"status": row.status, "wedof_state": row.wedof_state, "progress": row.progress,
                  "attendee": row.attendee, "first_name": row.first_name, "last_name": row.last_name,
                  "program": row.program}
        if stored_update != truth_update:
            mismatched.append(f"{external_id}.wedof_last_update: {stored_update} newer than truth {truth_update}")
        for key, value in expected.items():
            if actual[key] != value:
                mismatched.append(f"{external_id}.{key}: expected {value!r}, got {actual[key]!r}")
    duplicated += [f"{external_id}: not in the truth" for external_id in held if external_id not in truth_ids]
    duplicated += [f"attendee {a}: {n} beneficiaries" for a, n in beneficiaries_per_attendee.items() if n > 1]
    return {
        "folders": len(truth),
        "enrollments": enrollment_count,
        "missing": len(missing),
        "duplicated": len(duplicated),
        "stale": len(stale),
        "mismatched": len(mismatched),
        "behind_acknowledged": len(behind),
        "examples": (behind[:5] + missing[:3] + duplicated[:3] + stale[:5] + mismatched[:MAX_EXAMPLES])[:MAX_EXAMPLES * 2],
    }


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; the data layer stores UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def open_events(connection_id: int) -> int:
    """Inbox rows not yet in a final state (received / queued / processing)."""
    with session_scope() as session:
        return session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.connection_id == connection_id, WebhookEvent.status.in_(OPEN_STATUSES)))


def inbox_figures(connection_id: int) -> dict:
    """Counts by status, every stored delivery id, and received→processed latencies (ms)."""
    with session_scope() as session:
        rows = session.execute(
            select(WebhookEvent.delivery_id, WebhookEvent.status, WebhookEvent.received_at,
                   WebhookEvent.processed_at, WebhookEvent.attempts, WebhookEvent.status_reason)
            .where(WebhookEvent.connection_id == connection_id)
        ).all()
    by_status = Counter(str(row.status.value if hasattr(row.status, "value") else row.status) for row in rows)
    processed = {row.delivery_id: (_aware(row.received_at), _aware(row.processed_at)) for row in rows
                 if row.status == EventStatus.PROCESSED and row.processed_at is not None}
    failures = [f"{row.delivery_id}: {row.status_reason}" for row in rows if row.status == EventStatus.FAILED]
    return {
        "rows": len(rows),
        "delivery_ids": [row.delivery_id for row in rows],
        "by_status": dict(by_status),
        "max_attempts": max((row.attempts or 0 for row in rows), default=0),
        "processed_times": processed,
        "failures": failures[:MAX_EXAMPLES],
    }


def percentiles(values: list[float]) -> dict:
    """p50 / p99 / max of ``values`` (nearest-rank), rounded; empty input gives None."""
    if not values:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]

    return {"p50": round(rank(0.50), 1), "p99": round(rank(0.99), 1), "max": round(ordered[-1], 1), "n": len(ordered)}


def latencies(processed: dict[str, tuple[datetime, datetime]], first_sent: dict[str, datetime]) -> dict:
    """Delivery-to-applied times: from the inbox's received_at, and from the sandbox's first send."""
    from_received, from_sent = [], []
    for delivery_id, (received_at, processed_at) in processed.items():
        from_received.append((processed_at - received_at).total_seconds() * 1000)
        sent = first_sent.get(delivery_id)
        if sent is not None:
            from_sent.append((processed_at - sent).total_seconds() * 1000)
    return {"received_to_applied_ms": percentiles(from_received), "sent_to_applied_ms": percentiles(from_sent)}


def delivery_figures(log: list[dict], stats: dict, stored_ids: set[str]) -> dict:
    """What the sandbox sent, how the receiver answered, and whether anything forged was stored.

    ``log`` holds one entry per send attempt (sandbox ``/_sandbox/deliveries?log=1``).
    """
    genuine_acked: set[str] = set()
    forged_ids: set[str] = set()
    malformed_ids: set[str] = set()
    forged_statuses: Counter = Counter()
    malformed_statuses: Counter = Counter()
    genuine_statuses: Counter = Counter()  # every answer to a genuine delivery's attempts (503: the DB was away)
    first_sent: dict[str, datetime] = {}
    newest_acked: dict[str, str] = {}  # externalId -> newest lastUpdate answered 2xx
    for entry in log:
        kind, status, delivery_id = entry["kind"], entry["status"], entry["delivery_id"]
        ok = status is not None and 200 <= status < 300
        if kind == "bad_signature":
            forged_ids.add(delivery_id)
            forged_statuses[str(status)] += 1
        elif kind == "malformed":
            malformed_ids.add(delivery_id)
            malformed_statuses[str(status)] += 1
        else:
            genuine_statuses[str(status)] += 1
            sent_at = datetime_utc(entry["sent_at"])
            if delivery_id not in first_sent or sent_at < first_sent[delivery_id]:
                first_sent[delivery_id] = sent_at
            if kind == "normal" and ok:
                genuine_acked.add(delivery_id)
            if ok and datetime_utc(entry["lastUpdate"]) > datetime_utc(newest_acked.get(entry["externalId"])
                                                                       or "1970-01-01T00:00:00Z"):
                newest_acked[entry["externalId"]] = entry["lastUpdate"]
    return {
        "sandbox": {key: stats.get(key) for key in (
            "deliveries", "sent", "acknowledged", "retried", "failed_permanently", "duplicates_sent",
            "out_of_order", "bad_signature", "bad_signature_rejected", "bad_signature_accepted", "malformed",
            "malformed_rejected", "malformed_accepted", "queue_full", "pending")},
        "forged_statuses": dict(forged_statuses),
        "malformed_statuses": dict(malformed_statuses),
        "genuine_statuses": dict(genuine_statuses),
        "forged_stored": len(forged_ids & stored_ids),
        "malformed_stored": len(malformed_ids & stored_ids),
        "acknowledged_not_stored": len(genuine_acked - stored_ids),
        "acknowledged_ids": len(genuine_acked),
        "first_sent": first_sent,
        "newest_acknowledged": newest_acked,
    }
