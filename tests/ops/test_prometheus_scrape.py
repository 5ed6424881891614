"""Done when: a real Prometheus (Debian's package) scrapes the running product and finds its series.

Started here on loopback: the receiver under gunicorn with two workers in multiprocess mode (its
/metrics behind METRICS_TOKEN, which Prometheus sends), an events worker and a sync worker (prefork,
each with its own exporter port and PROMETHEUS_MULTIPROC_DIR), beat (its exporter serves the
data-layer gauges), the Wedof sandbox, PostgreSQL and Redis. After real signed deliveries and a
sync from the sandbox, Prometheus's HTTP API must answer the catalog's series with the values the
database holds. No timing thresholds: every wait is for a condition.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select

from bdc.db import session_scope
from bdc.models import EventStatus, SyncRun, SyncStatus, WebhookEvent
from tests.conftest import fresh_postgres_url, process_environment
from tests.support.processes import ManagedProcess, free_port, wait_for_port
from tests.support.sandbox import running_sandbox
from tests.support.services import wait_until
from tests.support.stack import CeleryBeat, CeleryWorker, Receiver
from tests.worker.conftest import build_stack_env
from tests.worker.helpers import make_connection, send
from wedof.signatures import compute_signature
from worker.task_names import PROCESS_EVENT, SYNC_CONNECTION

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

PROMETHEUS = "/usr/bin/prometheus"
FOLDERS = 12
DELIVERIES = 6
SECRET = "prometheus-hook-secret-7c1d"
TOKEN = "scrape-token-41b7e0"
RECEIVER_RULE = "/api/webhooks/wedof/<int:connection_id>"


class Prometheus:
    """``prometheus`` on loopback with a generated config, scraping every second; its data in a temp dir."""

    def __init__(self, workdir: Path, targets: dict[str, dict], log_dir: Path):
        self.port = free_port()
        self.workdir = workdir
        self.config = workdir / "prometheus.yml"
        jobs = []
        for job, target in targets.items():
            entry = {"job_name": job, "scrape_interval": "1s", "scrape_timeout": "1s",
                     "static_configs": [{"targets": [target["address"]]}]}
            if target.get("token"):
                entry["authorization"] = {"type": "Bearer", "credentials": target["token"]}
            jobs.append(entry)
        # JSON is YAML: no YAML writer needed.
        self.config.write_text(json.dumps({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                           "scrape_configs": jobs}, indent=1))
        self.process = ManagedProcess(
            f"prometheus-{self.port}",
            [PROMETHEUS, f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            log_dir=log_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Prometheus:
        self.process.start()
        wait_for_port(self.port, timeout=60, process=self.process.process)
        wait_until(lambda: requests.get(f"{self.url}/-/ready", timeout=5).status_code == 200, timeout=60,
                   message="prometheus ready")
        return self

    def query(self, expression: str) -> list[dict]:
        answer = requests.get(f"{self.url}/api/v1/query", params={"query": expression}, timeout=10).json()
        assert answer["status"] == "success", answer
        return answer["data"]["result"]

    def value(self, expression: str) -> float | None:
        result = self.query(expression)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture(scope="module")
def stack(redis_server, pg_cluster, pg_template, tmp_path_factory, output_dir):
    if not Path(PROMETHEUS).exists():
        pytest.fail(f"{PROMETHEUS} is missing: apt-get install prometheus (`make services` installs it)")
    workdir = tmp_path_factory.mktemp("prometheus-scrape")
    logs = output_dir / "logs"
    env = build_stack_env(fresh_postgres_url(pg_cluster, pg_template), redis_server.url, workdir / "var")
    with process_environment(env), running_sandbox(folders=FOLDERS, seed=14) as sandbox:
        tenant_id, connection_id = make_connection(sandbox.api_url, sandbox.api_key, slug="scraped-tenant",
                                                   secret=SECRET)
        ports = {"events": free_port(), "sync": free_port(), "beat": free_port()}
        started = []
        prometheus = None
        try:
            receiver = Receiver({**env, "PROMETHEUS_MULTIPROC_DIR": str(workdir / "mp-receiver"),
                                 "METRICS_TOKEN": TOKEN}, workers=2, log_dir=logs)
            started.append(receiver.start())
            for queue, concurrency in (("events", 2), ("sync", 1)):
                worker = CeleryWorker({**env, "BDC_METRICS_PORT": str(ports[queue]),
                                       "PROMETHEUS_MULTIPROC_DIR": str(workdir / f"mp-{queue}")},
                                      queues=queue, concurrency=concurrency, log_dir=logs)
                started.append(worker.start())
            started.append(CeleryBeat({**env, "BDC_METRICS_PORT": str(ports["beat"])}, log_dir=logs).start())
            for port in ports.values():
                wait_for_port(port, timeout=30)
            (workdir / "prometheus").mkdir()
            prometheus = Prometheus(workdir / "prometheus", {
                "receiver": {"address": f"127.0.0.1:{receiver.port}", "token": TOKEN},
                "worker-events": {"address": f"127.0.0.1:{ports['events']}"},
                "worker-sync": {"address": f"127.0.0.1:{ports['sync']}"},
                "beat": {"address": f"127.0.0.1:{ports['beat']}"},
            }, logs)
            prometheus.start()
            yield {"env": env, "sandbox": sandbox, "receiver": receiver, "prometheus": prometheus,
                   "tenant_id": tenant_id, "connection_id": connection_id, "ports": ports}
        finally:
            if prometheus is not None:
                prometheus.stop()
            for process in reversed(started):
                process.stop()
            shutil.rmtree(workdir / "prometheus", ignore_errors=True)


def deliver(receiver: Receiver, connection_id: int, body: bytes, secret: str = SECRET,
            event: str | None = "registrationFolder.updated") -> int:
    headers = {"Content-Type": "application/json", "X-Wedof-Delivery": f"scrape-{uuid.uuid4()}",
               "X-Wedof-Signature": compute_signature(secret, body)}
    if event is not None:
        headers["X-Wedof-Event"] = event
    return requests.post(f"{receiver.url}/api/webhooks/wedof/{connection_id}", data=body, headers=headers,
                         timeout=30).status_code


def eventually(prometheus: Prometheus, expression: str, expected=lambda value: value is not None,
               timeout: float = 90) -> float:
    """The expression's single value once ``expected`` holds for it (Prometheus scrapes every second)."""
    found: dict = {}

    def holds():
        found["value"] = prometheus.value(expression)
        return found["value"] is not None and expected(found["value"])

    try:
        wait_until(holds, timeout=timeout, interval=0.5, message=expression)
    except TimeoutError:
        raise AssertionError(f"{expression}: {prometheus.query(expression)} (last value {found.get('value')})") from None
    return found["value"]


def test_prometheus_finds_the_series_after_deliveries_and_a_sync(stack, broker_app):
    prometheus, receiver, sandbox = stack["prometheus"], stack["receiver"], stack["sandbox"]
    connection_id, tenant = stack["connection_id"], "scraped-tenant"

    # Every exporter is up, the receiver's with the token Prometheus sends.
    for job in ("receiver", "worker-events", "worker-sync", "beat"):
        eventually(prometheus, f'up{{job="{job}"}}', lambda value: value == 1)
    assert requests.get(f"{receiver.url}/metrics", timeout=10).status_code == 401  # without it

    # Real signed deliveries: full folders from the sandbox, and one that carries only an id (fetched).
    folders = sandbox.api("GET", "/registrationFolders", params={"limit": DELIVERIES}).json()
    for folder in folders:
        assert deliver(receiver, connection_id, json.dumps(folder).encode()) == 202
    envelope = json.dumps({"type": "stagiaire.progression.updated", "data": {"id": folders[0]["externalId"]}})
    assert deliver(receiver, connection_id, envelope.encode(), event=None) == 202
    assert deliver(receiver, connection_id, b'{"externalId": "1"}', secret="not-the-secret") == 401
    assert deliver(receiver, 987654, b"{}") == 404
    accepted = len(folders) + 1

    # A sync of every folder through the sync worker.
    task_id = send(broker_app, SYNC_CONNECTION, [connection_id, "all", True, None, "manual"])

    def sync_done():
        with session_scope() as session:
            run = session.scalars(select(SyncRun).where(SyncRun.task_id == task_id)).first()
            return run if run is not None and run.status in (SyncStatus.SUCCEEDED, SyncStatus.FAILED) else None

    run = wait_until(sync_done, timeout=120, interval=0.5, message="sync finished")
    assert run.status == SyncStatus.SUCCEEDED, run.error

    def events_done():
        with session_scope() as session:
            return session.scalar(select(func.count()).select_from(WebhookEvent)
                                  .where(WebhookEvent.status == EventStatus.PROCESSED)) == accepted

    wait_until(events_done, timeout=120, interval=0.5, message="deliveries processed")

    # Receiver (summed over its two gunicorn workers).
    q = prometheus
    assert eventually(q, f'bdc_webhook_deliveries_total{{tenant="{tenant}",outcome="accepted"}}',
                      lambda v: v == accepted) == accepted
    eventually(q, f'bdc_webhook_deliveries_total{{tenant="{tenant}",outcome="invalid_signature"}}', lambda v: v == 1)
    eventually(q, 'bdc_webhook_deliveries_total{tenant="unknown",outcome="unknown_connection"}', lambda v: v == 1)
    eventually(q, f'sum(bdc_http_request_duration_seconds_count{{endpoint="{RECEIVER_RULE}",method="POST",'
                  f'code="202"}})', lambda v: v == accepted)
    eventually(q, f'sum(bdc_http_request_duration_seconds_bucket{{endpoint="{RECEIVER_RULE}",code="202",le="+Inf"}})',
               lambda v: v == accepted)
    eventually(q, f'sum(bdc_http_request_duration_seconds_sum{{endpoint="{RECEIVER_RULE}"}})', lambda v: v > 0)
    eventually(q, "bdc_webhook_body_bytes_count", lambda v: v >= accepted + 1)

    # Workers: task outcomes, sync runs and folders, Wedof calls by endpoint class.
    eventually(q, f'bdc_tasks_total{{task="{PROCESS_EVENT}",outcome="succeeded"}}', lambda v: v >= accepted)
    eventually(q, f'bdc_tasks_total{{task="{SYNC_CONNECTION}",outcome="succeeded"}}', lambda v: v == 1)
    eventually(q, f'bdc_task_duration_seconds_count{{task="{PROCESS_EVENT}"}}', lambda v: v >= accepted)
    eventually(q, f'bdc_sync_runs_total{{tenant="{tenant}",kind="all",outcome="succeeded"}}', lambda v: v == 1)
    eventually(q, f'bdc_sync_folders_total{{tenant="{tenant}",result="fetched"}}', lambda v: v == FOLDERS)
    eventually(q, 'bdc_sync_duration_seconds_count{kind="all"}', lambda v: v == 1)
    eventually(q, f'bdc_wedof_requests_total{{job="worker-sync",tenant="{tenant}",endpoint="registrationFolders",'
                  f'method="GET",code="200"}}', lambda v: v >= 1)
    eventually(q, f'bdc_wedof_requests_total{{job="worker-events",tenant="{tenant}",'
                  f'endpoint="registrationFolders/{{id}}",method="GET",code="200"}}', lambda v: v >= 1)
    eventually(q, 'sum(bdc_wedof_request_duration_seconds_count{endpoint="registrationFolders"})', lambda v: v >= 1)

    # Beat's data-layer gauges: what the database holds.
    eventually(q, f'bdc_inbox_events{{tenant="{tenant}",status="processed"}}', lambda v: v == accepted)
    eventually(q, f'bdc_inbox_events{{tenant="{tenant}",status="failed"}}', lambda v: v == 0)
    eventually(q, f'bdc_inbox_oldest_unfinished_age_seconds{{tenant="{tenant}"}}', lambda v: v == 0)
    eventually(q, f'bdc_sync_last_success_timestamp_seconds{{tenant="{tenant}"}}',
               lambda v: v == pytest.approx(run.finished_at.timestamp(), abs=1e-3))
    eventually(q, 'bdc_data_layer_up{job="beat"}', lambda v: v == 1)

    # Low cardinality: no series carries a folder number or a connection id.
    numbers = {folder["externalId"] for folder in folders} | {str(connection_id), "987654"}
    series = requests.get(f"{q.url}/api/v1/series", params={"match[]": '{__name__=~"bdc_.+"}'}, timeout=10).json()
    labels = {value for item in series["data"] for name, value in item.items() if name != "__name__"}
    assert not labels & numbers


@pytest.fixture(scope="module")
def broker_app(stack):
    from tests.support.stack import control_app

    app = control_app(stack["env"]["REDIS_URL"])
    yield app
    app.close()
