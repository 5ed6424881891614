"""A worker SIGKILLed between the reservation and the POST, and again between the POST and its record, bills
once: Redis hands the unacknowledged message back (same task id) to a new worker, which reads the folder
first. No other worker runs in this module, so the killed one is the one holding the call.
"""

from __future__ import annotations

import pytest

from bdc.models import InvoiceStatus
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryWorker
from tests.worker.helpers import send
from tests.worker.test_billing import (
    assert_series_intact,
    billing_calls,
    invoice_of,
    tenant,
    to_bill,
    wait_for,
    wedof_folder,
)
from worker.task_names import BILL_FOLDER


@pytest.fixture(scope="module")
def stack_env(stack_env_each_backend):
    return stack_env_each_backend


@pytest.fixture(scope="module")
def sandbox():
    with running_sandbox(folders=30, seed=11) as sbx:
        yield sbx


@pytest.mark.parametrize("hold", [
    {"method": "GET", "when": "before"},  # killed after the reservation, before the POST
    {"method": "POST", "when": "after"},  # killed after Wedof applied the POST, before its record
], ids=["before-post", "after-post"])
def test_a_worker_killed_around_the_post_bills_once(stack_env, broker, sandbox, faults, output_dir, hold):
    tenant_id, _ = tenant(sandbox)
    enrollment_id, external_id, _ = to_bill(sandbox, tenant_id)
    sandbox.control("PUT", "/hold", json={**hold, "path_contains": f"/registrationFolders/{external_id}",
                                          "ms": 60_000, "count": 1})
    worker = CeleryWorker(stack_env, queues="sync", concurrency=1, log_dir=output_dir / "logs").start()
    try:
        send(broker, BILL_FOLDER, [enrollment_id])
        wait_until(lambda: sandbox.control("GET", "/hold")["hits"] >= 1, timeout=60, message="the held call")
        sent = invoice_of(enrollment_id)
        assert sent.status == InvoiceStatus.SENT  # the intent was committed before the call
        worker.kill()
    finally:
        worker.stop()
    sandbox.control("DELETE", "/hold")
    assert billing_calls(sandbox, external_id) == (1 if hold["method"] == "POST" else 0)
    # A new worker: Redis hands the unacknowledged message back (same task id), which reads the folder first.
    with CeleryWorker(stack_env, queues="sync", concurrency=1, log_dir=output_dir / "logs").start():
        billed = wait_for(enrollment_id, {InvoiceStatus.BILLED, InvoiceStatus.FAILED}, timeout=120)
    assert billed.status == InvoiceStatus.BILLED and billed.number == sent.number
    assert billing_calls(sandbox, external_id) == 1
    assert wedof_folder(sandbox, external_id)["billNumber"] == sent.number
    assert_series_intact(tenant_id)
