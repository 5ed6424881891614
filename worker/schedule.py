"""The beat schedule: sweep the inbox every minute, evaluate the lifecycle rules every 15 minutes,
bill due folders and read payments every 10 minutes, sync every connection hourly, purge raw bodies
and apply the personal-data retention daily; and for operations: look at problems and send staff
notices every minute, check each connection's key every 15 minutes, reconcile Wedof's counts with
ours hourly.

Every entry carries ``expires`` shorter than its interval: when beat or the broker was down, the
missed ticks are dropped instead of piling up and running back to back. Exactly one beat process
must run (docker-compose starts one).
"""

from __future__ import annotations

from worker.task_names import (
    APPLY_RETENTION,
    BILL_FOLDERS,
    CHECK_CONNECTIVITY,
    EVALUATE_LIFECYCLES,
    PURGE_RAW_BODIES,
    RECONCILE,
    SCHEDULE_SYNCS,
    SEND_NOTICES,
    SWEEP_INBOX,
)

DAY = 24 * 3600


def build_beat_schedule(settings) -> dict:
    sweep = settings.sweep_interval  # BDC_SWEEP_INTERVAL, default 60 s; tests use 1
    schedule = {
        "sweep-inbox": {
            "task": SWEEP_INBOX,
            "schedule": sweep,
            "options": {"expires": max(0.5, sweep * 0.9)},
        },
        "evaluate-lifecycles": {
            "task": EVALUATE_LIFECYCLES,
            "schedule": settings.lifecycle_interval,
            "options": {"expires": max(0.5, settings.lifecycle_interval * 0.9)},
        },
        "bill-folders": {
            "task": BILL_FOLDERS,
            "schedule": settings.billing_interval,
            "options": {"expires": max(0.5, settings.billing_interval * 0.9)},
        },
        "send-notices": {
            "task": SEND_NOTICES,
            "schedule": settings.notice_interval,
            "options": {"expires": max(0.5, settings.notice_interval * 0.9)},
        },
        "check-connectivity": {
            "task": CHECK_CONNECTIVITY,
            "schedule": settings.connectivity_interval,
            "options": {"expires": max(0.5, settings.connectivity_interval * 0.9)},
        },
        "purge-raw-bodies": {
            "task": PURGE_RAW_BODIES,
            "schedule": DAY,
            "options": {"expires": 3600},
        },
        "apply-personal-data-retention": {
            "task": APPLY_RETENTION,
            "schedule": DAY,
            "options": {"expires": 3600},
        },
    }
    if settings.wedof_sync_enabled:
        interval = settings.wedof_sync_interval
        schedule["schedule-syncs"] = {
            "task": SCHEDULE_SYNCS,
            "schedule": float(interval),
            "options": {"expires": interval * 0.9},
        }
        schedule["reconcile"] = {
            "task": RECONCILE,
            "schedule": settings.reconcile_interval,
            "options": {"expires": max(0.5, settings.reconcile_interval * 0.9)},
        }
    return schedule
