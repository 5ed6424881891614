"""The Prometheus alert rules (ops/prometheus/alerts.yml), checked and unit-tested by the real promtool.

promtool comes with Debian's ``prometheus`` package (scripts/ensure-system-packages.sh installs it).
Beyond promtool's own checks: every alert has a firing and a non-firing test case, says what to do,
and uses only metrics of the catalog (ops/prometheus/catalog.txt) that the product exports.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.support.processes import PROJECT_ROOT

RULES_DIR = PROJECT_ROOT / "ops" / "prometheus"
ALERTS = RULES_DIR / "alerts.yml"
ALERT_TESTS = RULES_DIR / "alerts_test.yml"
CONFIG = RULES_DIR / "prometheus.yml"
CATALOG = RULES_DIR / "catalog.txt"

# Prometheus's own series a rule may use besides the catalog.
PROMETHEUS_SERIES = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
SEVERITIES = {"critical", "warning", "info"}
# Alerts about the shared receiver or a process, not about one tenant.
NOT_PER_TENANT = {"BdcReceiverErrors", "BdcTargetDown"}

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
                   "group_left", "group_right", "inf", "nan", "atan2"}


def read_catalog(path: Path = CATALOG) -> dict[str, str]:
    """``{metric name: type}`` from the catalog file: ``name type`` a line, ``#`` comments."""
    catalog = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, kind = line.split()
            catalog[name] = kind
    return catalog


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (enough PromQL for our rules: no subqueries' quirks)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, called = match.group(1), match.group(2)
        if called or name.lower() in PROMQL_KEYWORDS:
            continue  # a function or an aggregation, not a series
        names.add(name)
    return names


def unknown_metrics(names: set[str], catalog: dict[str, str]) -> set[str]:
    unknown = set()
    for name in names - PROMETHEUS_SERIES:
        if name in catalog:
            continue
        family = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        if family is None or catalog.get(family) != "histogram":
            unknown.add(name)
    return unknown


def load_alerts(path: Path = ALERTS) -> list[dict]:
    groups = yaml.safe_load(path.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    assert path, "promtool is missing: run scripts/ensure-system-packages.sh (Debian package prometheus)"
    return path


def run_promtool(promtool: str, *args: str, cwd: Path = RULES_DIR) -> subprocess.CompletedProcess:
    return subprocess.run([promtool, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"{' '.join(result.args)} failed:\n{result.stdout}\n{result.stderr}"


# --- promtool itself -------------------------------------------------------------------------------

def test_rules_are_valid(promtool):
    assert_ok(run_promtool(promtool, "check", "rules", str(ALERTS)))


def test_rule_unit_tests_pass(promtool):
    assert_ok(run_promtool(promtool, "test", "rules", str(ALERT_TESTS)))


def test_example_scrape_config_is_valid(promtool):
    assert_ok(run_promtool(promtool, "check", "config", str(CONFIG)))


def test_example_scrape_config_scrapes_every_process_and_loads_the_rules():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    targets = {job["job_name"]: (job.get("metrics_path", "/metrics"), [t for s in job["static_configs"]
                                                                       for t in s["targets"]])
               for job in config["scrape_configs"]}
    assert targets == {
        "bdc-receiver": ("/metrics", ["127.0.0.1:8000"]),
        "bdc-worker-events": ("/metrics", ["127.0.0.1:9808"]),
        "bdc-worker-sync": ("/metrics", ["127.0.0.1:9809"]),
        "bdc-beat": ("/metrics", ["127.0.0.1:9810"]),
    }


# Each change breaks what an alert promises; the unit tests must notice every one.
BROKEN_RULES = [
    pytest.param("max by (tenant) (bdc_inbox_oldest_unfinished_age_seconds) > 300",
                 "max by (tenant) (bdc_inbox_oldest_unfinished_age_seconds) > 200", id="stuck-after-4-minutes"),
    pytest.param("(2 * max(bdc_sync_interval_seconds))", "(7200)", id="sync-interval-ignored"),
    pytest.param("unless on(tenant) max by (tenant) (bdc_wedof_key_revoked) == 1", "",
                 id="unreachable-also-on-revoked-key"),
    pytest.param('bdc_http_request_duration_seconds_count{code=~"5.."}',
                 'bdc_http_request_duration_seconds_count{code=~"[45].."}', id="receiver-4xx-alerts"),
    pytest.param('sum by (tenant) (bdc_inbox_events{status="failed"}) > 0\n        for: 1m',
                 'sum by (tenant) (bdc_inbox_events{status="failed"}) > 0\n        for: 0m',
                 id="failed-events-without-for"),
    pytest.param("for: 90m", "for: 30m", id="drift-fires-after-one-report"),
    pytest.param("tenant {{ $labels.tenant }} were refused", "tenant were refused",
                 id="invoice-description-without-tenant"),
]


@pytest.mark.parametrize(("original", "broken"), BROKEN_RULES)
def test_unit_tests_catch_a_broken_rule(promtool, tmp_path, original, broken):
    rules = ALERTS.read_text()
    assert rules.count(original) == 1, f"the rule to break is no longer in alerts.yml: {original!r}"
    (tmp_path / "alerts.yml").write_text(rules.replace(original, broken))
    shutil.copy(ALERT_TESTS, tmp_path / "alerts_test.yml")
    assert_ok(run_promtool(promtool, "check", "rules", "alerts.yml", cwd=tmp_path))  # still valid PromQL

    result = run_promtool(promtool, "test", "rules", "alerts_test.yml", cwd=tmp_path)

    assert result.returncode != 0, f"promtool passed a broken rule ({broken!r}):\n{result.stdout}"
    assert "FAILED" in result.stdout + result.stderr


def test_a_broken_rules_file_is_refused(promtool, tmp_path):
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text().replace("> 300", "> > 300", 1))
    result = run_promtool(promtool, "check", "rules", "alerts.yml", cwd=tmp_path)
    assert result.returncode != 0
    assert "parse error" in (result.stdout + result.stderr).lower()


# --- what promtool does not check ----------------------------------------------------------------

def test_every_alert_has_a_firing_and_a_silent_test_case():
    alerts = {rule["alert"] for rule in load_alerts()}
    cases = [case for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]
             for case in test.get("alert_rule_test", [])]
    firing = {case["alertname"] for case in cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in cases if not case.get("exp_alerts")}
    assert alerts - firing == set(), "alerts with no case where they fire"
    assert alerts - silent == set(), "alerts with no case where they stay silent"
    assert (firing | silent) - alerts == set(), "test cases of alerts that do not exist"


def test_issue_14_alerts_are_all_there():
    required = {"BdcFailedEvents", "BdcInboxEventStuck", "BdcSyncOverdue", "BdcWedofKeyRevoked",
                "BdcReceiverErrors", "BdcLateDeclaration", "BdcInvoiceFailed"}
    assert required <= {rule["alert"] for rule in load_alerts()}


def test_every_alert_says_how_bad_it_is_and_what_to_do():
    for rule in load_alerts():
        name, annotations = rule["alert"], rule.get("annotations", {})
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", ""))), f"{name}: no `for:`"
        assert rule.get("labels", {}).get("severity") in SEVERITIES, f"{name}: severity"
        assert {"summary", "description", "runbook"} <= set(annotations), f"{name}: annotations"
        assert annotations["runbook"] == f"README.md, Operations, Alerts, {name}"
        if name not in NOT_PER_TENANT:
            assert "{{ $labels.tenant }}" in annotations["summary"], f"{name}: summary names no tenant"
            assert "{{ $labels.tenant }}" in annotations["description"], f"{name}: description names no tenant"


def test_rules_use_only_catalog_metrics():
    catalog = read_catalog()
    used = set()
    for rule in load_alerts():
        names = metric_names(rule["expr"])
        assert names, f"{rule['alert']}: no metric found in {rule['expr']!r}"
        assert unknown_metrics(names, catalog) == set(), f"{rule['alert']} uses metrics outside the catalog"
        used |= names
    # The data the issue asks alerts on is really used.
    assert {"bdc_inbox_events", "bdc_inbox_oldest_unfinished_age_seconds", "bdc_sync_last_success_timestamp_seconds",
            "bdc_sync_interval_seconds", "bdc_wedof_key_revoked", "bdc_wedof_requests_total",
            "bdc_http_request_duration_seconds_count", "bdc_lifecycle_late_declarations", "bdc_invoices"} <= used


def test_catalog_matches_the_spec_of_issue_14():
    assert read_catalog() == {
        "bdc_webhook_deliveries_total": "counter", "bdc_http_request_duration_seconds": "histogram",
        "bdc_webhook_body_bytes": "histogram", "bdc_tasks_total": "counter",
        "bdc_task_duration_seconds": "histogram", "bdc_sync_runs_total": "counter",
        "bdc_sync_duration_seconds": "histogram", "bdc_sync_folders_total": "counter",
        "bdc_wedof_requests_total": "counter", "bdc_wedof_request_duration_seconds": "histogram",
        "bdc_wedof_throttle_wait_seconds_total": "counter", "bdc_inbox_events": "gauge",
        "bdc_inbox_oldest_unfinished_age_seconds": "gauge", "bdc_lifecycle_actions": "gauge",
        "bdc_lifecycle_late_declarations": "gauge", "bdc_invoices": "gauge",
        "bdc_sync_last_success_timestamp_seconds": "gauge", "bdc_sync_interval_seconds": "gauge",
        "bdc_wedof_connectivity_up": "gauge", "bdc_wedof_key_revoked": "gauge",
        "bdc_reconciliation_drift": "gauge", "bdc_api_drift_keys": "gauge", "bdc_problems_open": "gauge",
        "bdc_data_layer_up": "gauge",
    }


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (tenant) (rate(bdc_tasks_total{outcome="failed", task=~"bdc.sync"}[5m])) > 0', {"bdc_tasks_total"}),
    ("(time() - a_b) > on() group_left() (2 * max(c:d))", {"a_b", "c:d"}),
    ("x == 1 or sum without (le) (increase(y_bucket[1h] offset 5m)) > 1e3 unless on(tenant) z",
     {"x", "y_bucket", "z"}),
    ('histogram_quantile(0.99, sum by (le) (rate(h_bucket{code!="200"}[5m])))', {"h_bucket"}),
])
def test_metric_names_finds_the_selected_series(expr, names):
    assert metric_names(expr) == names


def test_unknown_metrics_are_reported():
    catalog = read_catalog()
    assert unknown_metrics({"bdc_inbox_events", "up", "bdc_http_request_duration_seconds_bucket"}, catalog) == set()
    # A typo, a gauge read as a histogram, a metric nobody exports.
    assert unknown_metrics({"bdc_inbox_event", "bdc_invoices_count", "node_load1"}, catalog) == {
        "bdc_inbox_event", "bdc_invoices_count", "node_load1"}
