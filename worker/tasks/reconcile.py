"""``bdc.reconcile``: one reconciliation report per connection (:mod:`worker.reconcile`).

Beat sends it without arguments: every enabled connection with an API key. The admin API sends it with
one ``connection_id``. One connection's failure is its own failed report; the others go on. Periodic:
it never retries, its next tick is the retry.
"""

from __future__ import annotations

from bdc.db import session_scope
from bdc.models import WedofConnection
from worker import reconcile as reconciliation
from worker.celery_app import app
from worker.policy import BadTaskArgument, Failure, PolicyTask, as_id, log
from worker.task_names import RECONCILE


@app.task(base=PolicyTask, bind=True, name=RECONCILE, max_retries=0)
def reconcile(self, connection_id=None):
    with session_scope() as session:
        if connection_id is None:
            connection_ids = reconciliation.connections_to_reconcile(session)
        else:
            connection_id = as_id(connection_id, "connection_id")
            if session.get(WedofConnection, connection_id) is None:
                raise BadTaskArgument(f"unknown connection id {connection_id}")
            connection_ids = [connection_id]
    reports = []
    for one in connection_ids:
        try:
            outcome = reconciliation.reconcile_connection(one)
        except Exception as exc:  # noqa: BLE001 - one connection's surprise is its report, not the others' end
            failure = Failure.of(exc)
            log.error("reconciliation of connection %s: %s", one, failure.reason, exc_info=failure.unexpected)
            if failure.transient:
                raise  # the database (or Redis) is away: no report can be written; the next tick tries again
            outcome = reconciliation.record_failure(one, failure.reason)
        reports.append(outcome.as_json())
    return {"status": "ok", "reports": reports}
