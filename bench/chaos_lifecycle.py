"""The lifecycle in the chaos run: staff record evidence for a share of the folders while the run's faults
happen, the tenant's rules run in auto mode, and the verdict counts declarations missing, duplicated and
early, with the sandbox's own count of transition calls per folder as the truth.

Evidence is written as the BDC host would write it, straight into the shared tables: an attended
session for a folder in ``accepted`` (an entry becomes due), a conclusion attended and the synthesis
handed over for a folder in ``inTraining`` (an end becomes due). The beat's evaluation finds it.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from bdc.db import session_scope
from bdc.models import (
    ActionStatus,
    Appointment,
    AppointmentPhase,
    AppointmentStatus,
    Enrollment,
    LifecycleAction,
    LifecycleKind,
    LifecycleMode,
    LifecycleSettings,
)

# The rules the run turns on: entries, rates and normal ends from the evidence. Abandons (the seeded
# folders have long been inactive) and cancels (no withdrawal is recorded) stay off.
AUTO = (LifecycleKind.ENTRY, LifecycleKind.PROGRESS, LifecycleKind.END)
SESSION_HOURS = 3


def enable(tenant_id: int) -> None:
    with session_scope() as session:
        session.add(LifecycleSettings(tenant_id=tenant_id, normal_end_code="8", abandon_code="9", cancel_code="4",
                                      **{f"{k.value}_mode": LifecycleMode.AUTO if k in AUTO else LifecycleMode.OFF
                                         for k in LifecycleKind}))


@dataclass
class Evidence:
    """What staff recorded: first attended day per folder for entries, the folders given an end."""

    entries: dict[str, date] = field(default_factory=dict)
    ends: set[str] = field(default_factory=set)
    errors: int = 0


def record(tenant_id: int, share: float, duration: float, stop: threading.Event, evidence: Evidence,
           seed: int = 7) -> None:
    """Spread over ``duration`` seconds, record evidence for about ``share`` of the tenant's folders."""
    if share <= 0:
        return  # the lifecycle stays off: the run's baseline
    rng = random.Random(f"lifecycle:{seed}")
    with session_scope() as session:
        total = len(session.scalars(select(Enrollment.id).where(Enrollment.tenant_id == tenant_id)).all())
    wanted, ticks = max(1, int(total * share)), max(1, int(duration / 0.5))
    per_tick = max(1, -(-wanted // ticks))
    deadline = time.monotonic() + duration
    while not stop.is_set() and time.monotonic() < deadline and len(evidence.entries) + len(evidence.ends) < wanted:
        try:
            _one_tick(tenant_id, per_tick, rng, evidence)
        except Exception:  # noqa: BLE001 - the database may be away: staff try again a moment later
            evidence.errors += 1
        time.sleep(0.5)


def _one_tick(tenant_id: int, count: int, rng: random.Random, evidence: Evidence) -> None:
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    with session_scope() as session:
        candidates = session.execute(
            select(Enrollment.id, Enrollment.external_id, Enrollment.beneficiary_id, Enrollment.wedof_state,
                   Enrollment.session_start_date)
            .where(Enrollment.tenant_id == tenant_id, Enrollment.wedof_state.in_(("accepted", "inTraining")))).all()
        fresh = [c for c in candidates if c.external_id not in evidence.entries and c.external_id not in evidence.ends]
        for row in rng.sample(fresh, min(count, len(fresh))):
            if row.session_start_date is not None and yesterday < row.session_start_date:
                continue
            start = datetime(yesterday.year, yesterday.month, yesterday.day, 9, tzinfo=UTC)
            phase = AppointmentPhase.INVESTIGATION if row.wedof_state == "accepted" else AppointmentPhase.CONCLUSION
            session.add(Appointment(tenant_id=tenant_id, beneficiary_id=row.beneficiary_id, enrollment_id=row.id,
                                    phase=phase, status=AppointmentStatus.ATTENDED, starts_at=start,
                                    ends_at=start + timedelta(hours=SESSION_HOURS)))
            if row.wedof_state == "accepted":
                evidence.entries[row.external_id] = yesterday
            else:
                session.get(Enrollment, row.id).synthesis_delivered_on = yesterday + timedelta(days=1)
                evidence.ends.add(row.external_id)


def in_flight(tenant_id: int) -> int:
    """Actions decided but not finished: approved, or being sent."""
    with session_scope() as session:
        return len(session.scalars(select(LifecycleAction.id).where(
            LifecycleAction.tenant_id == tenant_id,
            LifecycleAction.status.in_((ActionStatus.APPROVED, ActionStatus.SENT)))).all())


def verdict(tenant_id: int, evidence: Evidence, truth: list[dict], transitions: dict[str, dict[str, int]]) -> dict:
    """Declarations missing, duplicated and early; what was sent, refused, and where the evidence stood."""
    by_id = {f["externalId"]: f for f in truth}
    transitions = {f: {verb: n for verb, n in verbs.items() if verb != "billing"}  # billing has its own verdict
                   for f, verbs in transitions.items()}
    duplicated = [(f, verb, n) for f, verbs in transitions.items() for verb, n in verbs.items() if n > 1]
    # Missing: the evidence made it due and the folder, at the end, still waits for it at Wedof.
    missing = [f for f in evidence.entries if by_id[f]["state"] == "accepted"]
    missing += [f for f in evidence.ends if by_id[f]["state"] in ("inTraining", "terminated")]
    early = []
    for external_id, verbs in transitions.items():
        if "inTraining" not in verbs:
            continue
        declared = (by_id[external_id]["history"].get("inTrainingDate") or "")[:10]
        first_attended = evidence.entries.get(external_id)
        if first_attended is None or declared < first_attended.isoformat():
            early.append((external_id, declared, str(first_attended)))
    with session_scope() as session:
        actions = session.execute(select(LifecycleAction.kind, LifecycleAction.status).where(
            LifecycleAction.tenant_id == tenant_id)).all()
    by_status: dict[str, int] = {}
    for kind, status in actions:
        by_status[f"{kind.value}:{status.value}"] = by_status.get(f"{kind.value}:{status.value}", 0) + 1
    calls = sum(n for verbs in transitions.values() for n in verbs.values())
    return {"evidence_entries": len(evidence.entries), "evidence_ends": len(evidence.ends),
            "evidence_errors": evidence.errors, "transition_calls": calls, "actions": by_status,
            "missing": len(missing), "duplicated": len(duplicated), "early": len(early),
            "examples": {"missing": missing[:10], "duplicated": duplicated[:10], "early": early[:10]}}
