"""Lifecycle evaluation benchmark: the beat's paged evaluation vs one enrollment at a time, same run, same rules.

    python -m bench.lifecycle_eval [--enrollments 10000] [--big 50000]

Fills a throwaway PostgreSQL with a tenant of N enrollments in every Wedof state, each with a few
appointments (attended, missed, planned; every phase), some synthesis hand-overs and withdrawals, and
lifecycle settings in dry-run mode for every kind (decisions are recorded, nothing is sent). Then, in
child processes timed as warm workers:

1. paged: ``lifecycle.evaluate.evaluate_page`` over the whole tenant, 500 enrollments a page (a fixed
   number of reads per page), as ``wedof.evaluate_lifecycles`` runs it;
2. one at a time: the same function for one enrollment per call and per transaction (its own reads
   each time), the loop a first implementation would write;

each twice: from no actions (the first evaluation proposes), and again with nothing changed (the beat's
usual tick). Target: paged ≥ 10× faster; peak RSS flat from N to ``--big`` enrollments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from bench.full_sync import peak_rss_kib

PROJECT_ROOT = Path(__file__).resolve().parent.parent
STATES = ("accepted", "accepted", "inTraining", "inTraining", "inTraining", "terminated", "validated",
          "serviceDoneDeclared", "canceledByAttendee")


def populate(database_url: str, count: int, seed: int = 1) -> int:
    """A tenant with ``count`` enrollments and their evidence, written with Core inserts; its settings id."""
    from sqlalchemy import insert

    from bdc.db import session_scope
    from bdc.models import (
        Appointment,
        Beneficiary,
        Enrollment,
        LifecycleKind,
        LifecycleMode,
        LifecycleSettings,
        Program,
        Tenant,
        User,
    )

    rng = random.Random(seed)
    now, today = datetime.now(UTC), date.today()
    stamp = {"created_at": now, "updated_at": now}
    with session_scope(database_url) as session:
        tenant = Tenant(name="Bench", slug=f"bench-{count}")
        session.add(tenant)
        session.flush()
        program = Program(tenant_id=tenant.id, name="Bilan de compétences", external_id="ta-bench",
                          category="bilan_competences")
        settings = LifecycleSettings(tenant_id=tenant.id, normal_end_code="8", abandon_code="9", cancel_code="4",
                                     **{f"{k.value}_mode": LifecycleMode.DRY_RUN for k in LifecycleKind})
        session.add_all([program, settings])
        session.flush()
        tenant_id, program_id, settings_id = tenant.id, program.id, settings.id
        users = [{"tenant_id": tenant_id, "email": f"b{n}@bench-{count}.test", "role": "student", "is_active": True, **stamp}
                 for n in range(count)]
        user_ids = list(session.execute(insert(User).returning(User.id, sort_by_parameter_order=True), users).scalars())
        beneficiaries = [{"tenant_id": tenant_id, "user_id": user_id, "external_id": f"att-{n}", "status": "active",
                          "custom_fields": {}, **stamp} for n, user_id in enumerate(user_ids)]
        beneficiary_ids = list(session.execute(
            insert(Beneficiary).returning(Beneficiary.id, sort_by_parameter_order=True), beneficiaries).scalars())
        enrollments = []
        for n, beneficiary_id in enumerate(beneficiary_ids):
            start = today - timedelta(days=rng.randint(5, 90))
            enrollments.append({
                "tenant_id": tenant_id, "beneficiary_id": beneficiary_id, "program_id": program_id,
                "external_id": f"{4_000_000_000 + n}", "status": "enrolled", "progress": rng.choice([0, 0, 25, 50]),
                "wedof_state": rng.choice(STATES), "session_start_date": start,
                "session_end_date": start + timedelta(days=60), "indicative_duration_hours": 24.0,
                "in_training_at": datetime.combine(start, datetime.min.time(), UTC),
                "synthesis_delivered_on": today - timedelta(days=1) if rng.random() < 0.2 else None,
                "withdrawn_on": today - timedelta(days=2) if rng.random() < 0.05 else None, **stamp})
        enrollment_ids = list(session.execute(
            insert(Enrollment).returning(Enrollment.id, sort_by_parameter_order=True), enrollments).scalars())
        appointments = []
        for enrollment_id, beneficiary_id, enrollment in zip(enrollment_ids, beneficiary_ids, enrollments, strict=True):
            for k in range(rng.randint(0, 4)):
                day = enrollment["session_start_date"] + timedelta(days=3 + 7 * k)
                begins = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=9)
                appointments.append({
                    "tenant_id": tenant_id, "beneficiary_id": beneficiary_id, "enrollment_id": enrollment_id,
                    "phase": ("preliminaire", "investigation", "investigation", "conclusion")[k],
                    "status": "attended" if day < today and rng.random() < 0.8 else rng.choice(["scheduled", "missed"]),
                    "starts_at": begins, "ends_at": begins + timedelta(hours=3), **stamp})
        for start in range(0, len(appointments), 5000):
            session.execute(insert(Appointment), appointments[start:start + 5000])
    return settings_id


def child(database_url: str, settings_id: int, mode: str) -> None:
    """Evaluate the whole tenant in this process, as a warm worker; print seconds, peak RSS, outcome."""
    from sqlalchemy import select, text

    from bdc.db import get_engine, session_scope
    from bdc.models import Enrollment, LifecycleSettings
    from lifecycle.evaluate import Outcome, evaluate_page

    with get_engine(database_url).connect() as connection:
        connection.execute(text("SELECT 1"))
    total = Outcome()
    started = time.perf_counter()
    if mode == "paged":
        after = 0
        while after is not None:
            with session_scope(database_url) as session:
                page = evaluate_page(session, session.get(LifecycleSettings, settings_id), after_id=after)
            total.add(page)
            after = page.last_id
    else:
        with session_scope(database_url) as session:
            tenant_id = session.get(LifecycleSettings, settings_id).tenant_id
            ids = list(session.scalars(select(Enrollment.id).where(Enrollment.tenant_id == tenant_id)
                                       .order_by(Enrollment.id)))
        for enrollment_id in ids:
            with session_scope(database_url) as session:
                total.add(evaluate_page(session, session.get(LifecycleSettings, settings_id),
                                        enrollment_ids=[enrollment_id]))
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_rss_kib": peak_rss_kib(), "evaluated": total.evaluated,
                      "proposed": total.proposed, "revised": total.revised, "withdrawn": total.withdrawn}))


def run_child(env: dict, settings_id: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-m", "bench.lifecycle_eval", "--child", str(settings_id), mode],
                         cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def clear_actions(database_url: str) -> None:
    from sqlalchemy import delete

    from bdc.db import session_scope
    from bdc.models import AuditLog, LifecycleAction, Notice

    with session_scope(database_url) as session:
        for table in (LifecycleAction, Notice, AuditLog):
            session.execute(delete(table))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--big", type=int, default=50_000, help="size of the memory check (0: skip)")
    parser.add_argument("--child", nargs=2, metavar=("SETTINGS_ID", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(os.environ["DATABASE_URL"], int(args.child[0]), args.child[1])
        return 0

    from cryptography.fernet import Fernet

    from bdc.db import dispose_engines
    from bdc.migrate import upgrade
    from tests.support.services import PostgresCluster

    workdir = Path(tempfile.mkdtemp(prefix="bench-lifecycle-"))
    os.environ.update({"APP_ENV": "test", "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode(),
                       "JWT_SECRET_KEY": "bench-jwt-secret-key-long-enough", "BDC_VAR_DIR": str(workdir)})
    cluster = PostgresCluster().start()
    try:
        url = cluster.database_url("postgres")
        upgrade(url)
        env = {**os.environ, "DATABASE_URL": url}
        started = time.perf_counter()
        settings_id = populate(url, args.enrollments)
        dispose_engines()
        print(f"{args.enrollments} enrollments with evidence written in {time.perf_counter() - started:.1f} s")
        figures = {}
        for mode in ("paged", "one at a time"):
            clear_actions(url)
            dispose_engines()
            first = run_child(env, settings_id, "paged" if mode == "paged" else "single")
            again = run_child(env, settings_id, "paged" if mode == "paged" else "single")
            figures[mode] = (first, again)
            print(f"{mode:>14}: first evaluation {first['seconds']:7.2f} s ({first['proposed']} proposed), "
                  f"nothing changed {again['seconds']:7.2f} s ({again['proposed']} proposed), "
                  f"{first['evaluated']} enrollments, peak RSS {first['peak_rss_kib'] / 1024:.1f} MiB")
        for label, index in (("first evaluation", 0), ("nothing changed", 1)):
            ratio = figures["one at a time"][index]["seconds"] / figures["paged"][index]["seconds"]
            print(f"  {label}: paged is {ratio:.1f}x faster than one at a time (target >= 10x)")
        if args.big:
            clear_actions(url)
            big_settings = populate(url, args.big, seed=2)
            dispose_engines()
            big = run_child(env, big_settings, "paged")
            ratio = big["peak_rss_kib"] / figures["paged"][0]["peak_rss_kib"]
            print(f"  peak RSS, paged: {args.enrollments} -> {args.big} enrollments: "
                  f"{figures['paged'][0]['peak_rss_kib'] / 1024:.1f} -> {big['peak_rss_kib'] / 1024:.1f} MiB "
                  f"= {ratio:.2f}x (target: flat); {big['seconds']:.1f} s for {big['evaluated']} enrollments")
        return 0
    finally:
        cluster.cleanup()


if __name__ == "__main__":
    sys.exit(main())
