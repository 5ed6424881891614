"""gunicorn settings for the receiver; each can be overridden with GUNICORN_* environment variables."""

import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
graceful_timeout = 10
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-")
# gunicorn's default line, with the path instead of the request line: the page's first URL carries
# ``?token=<JWT>``, which must not be written to the access log.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(b)s "%(f)s" "%(a)s"'
# Forked workers must not share the parent's database connections.
preload_app = False


# Metrics (webapp/metrics.py): with PROMETHEUS_MULTIPROC_DIR each worker writes its values to files
# in that directory, which /metrics sums. The directory belongs to this gunicorn alone (one per
# process group): emptied when the master starts, so an earlier run's workers are not counted.
def _metrics_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir") or None


def on_starting(server) -> None:
    directory = _metrics_dir()
    if directory:
        os.makedirs(directory, exist_ok=True)
        for name in os.listdir(directory):
            if name.endswith(".db"):
                os.remove(os.path.join(directory, name))


def child_exit(server, worker) -> None:
    # An exited worker's counters stay summed; its live gauges (none today) are dropped.
    if _metrics_dir():
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
