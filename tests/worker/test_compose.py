"""docker-compose.yml and the Dockerfile, checked by parsing (Docker does not run on the test machine)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def load() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_service_is_there_with_a_health_check():
    services = load()["services"]
    assert {"postgres", "redis", "web", "worker_events", "worker_sync", "beat", "flower", "sandbox"} <= set(services)
    for name, service in services.items():
        assert "healthcheck" in service and service["healthcheck"]["test"], name


def test_exactly_one_beat_and_one_worker_per_queue():
    services = load()["services"]
    beats = [n for n, s in services.items() if "beat" in " ".join(map(str, s.get("command") or []))]
    assert beats == ["beat"]
    assert services["beat"].get("deploy", {}).get("replicas", 1) == 1
    queues = {n: s["command"][s["command"].index("-Q") + 1] for n, s in services.items()
              if isinstance(s.get("command"), list) and "-Q" in s["command"]}
    assert queues == {"worker_events": "events", "worker_sync": "sync"}


def test_redis_never_evicts_and_persists():
    command = load()["services"]["redis"]["command"]
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"
    assert command[command.index("--appendonly") + 1] == "yes"


def test_receiver_migrates_before_serving_and_sandbox_is_demo_only():
    services = load()["services"]
    web = services["web"]["command"]
    assert web.index("bdc.migrate upgrade") < web.index("gunicorn")
    assert services["sandbox"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in services.items() if n != "sandbox")
    for name in ("worker_events", "worker_sync", "beat", "flower"):
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy", name


def test_published_ports_are_loopback_only():
    for name, service in load()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_dockerfile_builds_from_python_311_slim_and_installs_the_project():
    text = (ROOT / "Dockerfile").read_text()
    assert text.splitlines()[1].startswith("FROM python:3.11-slim")
    assert "pip install ." in text
    assert "celeryconfig.py" in text  # a top-level module, not part of the installed packages
    assert "USER " in text  # never runs as root


def test_the_image_copies_every_package_the_project_installs():
    import tomllib

    packages = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {line.split()[1] for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")}
    assert {pattern.rstrip("*") for pattern in packages} <= copied


def test_every_service_restarts_unless_stopped():
    # A process that exits (a worker kombu ended in a Redis outage, an OOM kill) comes back by itself.
    for name, service in load()["services"].items():
        assert service.get("restart") == "unless-stopped", name


def test_each_worker_and_beat_exports_metrics_on_its_own_port_with_a_fresh_multiprocess_folder():
    services = load()["services"]
    ports = {name: services[name]["environment"]["BDC_METRICS_PORT"] for name in ("worker_events", "worker_sync", "beat")}
    assert ports == {"worker_events": "9808", "worker_sync": "9809", "beat": "9810"}
    for name, port in ports.items():
        service = services[name]
        assert service["expose"] == [port] and "ports" not in service, name  # the compose network only
        assert service["environment"]["BDC_METRICS_ADDR"] == "0.0.0.0", name
    for name in (*ports, "web"):
        folder = services[name]["environment"]["PROMETHEUS_MULTIPROC_DIR"]
        assert folder in services[name]["tmpfs"], name  # empty again at every (re)start of the container
    for name in ("flower", "sandbox", "postgres", "redis"):
        assert "BDC_METRICS_PORT" not in (services[name].get("environment") or {}), name
