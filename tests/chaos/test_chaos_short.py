"""The chaos scenario, short: real processes, a few hundred changes under fire, nothing lost.

Runs ``bench.chaos.run_scenario`` in-process on a PostgreSQL cluster of its own: the sandbox delivers
~400 changes with duplicates, out-of-order, forged and truncated deliveries while one worker is
SIGKILLed, Redis (AOF) is down for 5 s and PostgreSQL for 5 s; then the data layer must equal the
sandbox's truth, and any process that exited by itself meanwhile was restarted (and counted).
"""

from __future__ import annotations

import shutil

import pytest

from bench.chaos import ChaosConfig, run_scenario, verdict_line
from tests.support.personal_data import find_personal_values, sandbox_personal_values
from wedof_sandbox.population import generate


def _log_dir(output_dir):
    return output_dir / "logs" / "chaos-short"


@pytest.fixture(scope="module")
def verdict(output_dir):
    # Its own cluster, which the run stops for its database outage (the suite's own stays up).
    shutil.rmtree(_log_dir(output_dir), ignore_errors=True)  # this run's logs only (the log scan below)
    config = ChaosConfig.short(log_dir=_log_dir(output_dir))
    result = run_scenario(config)
    print(verdict_line(result))
    return result


@pytest.mark.timeout(300)
def test_no_row_missing_duplicated_stale_or_wrong(verdict):
    rows = verdict["rows"]
    assert (rows["missing"], rows["duplicated"], rows["stale"], rows["mismatched"]) == (0, 0, 0, 0), rows["examples"]
    assert rows["enrollments"] == rows["folders"]


def test_every_acknowledged_delivery_was_stored_and_applied(verdict):
    deliveries, events = verdict["deliveries"], verdict["events"]
    assert deliveries["accepted"] == deliveries["genuine"] > 0
    assert deliveries["acknowledged_not_stored"] == 0
    assert deliveries["failed_permanently"] == 0
    assert events["rows"] == deliveries["genuine"]  # duplicates answered, never stored twice
    assert (events["failed"], events["received"], events["queued"], events["processing"]) == (0, 0, 0, 0), events
    # The webhook path alone, before the final sync: no acknowledged version left unapplied.
    assert verdict["before_final_sync"]["behind_acknowledged"] == 0, verdict["before_final_sync"]["examples"]


def test_forged_and_truncated_deliveries_are_rejected_and_never_stored(verdict):
    deliveries = verdict["deliveries"]
    assert deliveries["forged"] > 0 and deliveries["malformed"] > 0
    # 401 for each (429 past the connection's bad-signature limit for the minute), or no answer at all
    # ("None") when sent while the receiver was unreachable, or 503 while the database was down (no
    # secret to check them with): never a 2xx.
    assert set(deliveries["forged_statuses"]) <= {"401", "429", "None", "503"}
    assert deliveries["forged_statuses"]["401"] > 0
    assert deliveries["forged_stored"] == 0
    assert set(deliveries["malformed_statuses"]) <= {"400", "503"} and deliveries["malformed_statuses"]["400"] > 0
    assert deliveries["malformed_stored"] == 0


def test_the_chaos_really_happened(verdict):
    actions = [a["action"] for a in verdict["timeline"]]
    assert actions.count("worker a: SIGKILL") == 1 and "redis: started again" in actions
    assert "postgresql: started again" in actions
    assert verdict["deliveries"]["genuine_statuses"].get("503", 0) > 0  # the receiver said so while it was down
    assert verdict["deliveries"]["duplicates_sent"] > 0
    assert verdict["changes"]["applied"] >= 400
    assert all(verdict["checks"].values()), verdict["checks"]


def test_declarations_follow_the_evidence_none_missing_duplicated_or_early(verdict):
    lifecycle = verdict["lifecycle"]
    assert lifecycle["evidence_entries"] + lifecycle["evidence_ends"] > 0 and lifecycle["transition_calls"] > 0
    assert (lifecycle["missing"], lifecycle["duplicated"], lifecycle["early"]) == (0, 0, 0), lifecycle["examples"]


def test_every_folder_billed_once_with_one_number(verdict):
    billing = verdict["billing"]
    assert billing["billing_calls"] > 0 and billing["billed_in_run"] > 0, billing
    assert (billing["missing"], billing["duplicated"], billing["double_billed"]) == (0, 0, 0), billing["examples"]


def test_every_process_that_exited_on_its_own_was_restarted_and_the_verdict_says_so(verdict):
    # The run supervises as production does: 0 unexpected exits, or each one restarted (#14).
    exits = verdict["unexpected_exits"]
    assert set(exits) == {"worker a", "worker b", "beat", "receiver"}
    assert all(e["restarted"] == e["exits"] for e in exits.values()), exits
    assert verdict["checks"]["exited_processes_restarted"]
    line = verdict_line(verdict)
    assert "| unexpected exits: worker a " in line and ", receiver " in line, line
    assert not [n for n, state in verdict["processes_at_end"].items() if state != "alive"], verdict["processes_at_end"]


def test_no_log_line_of_the_run_carries_a_beneficiary_s_personal_data(verdict, output_dir, tmp_path):
    # Receiver, workers (webhooks, the syncs, declarations, billing), beat: every log file of the run.
    config = ChaosConfig.short()
    values = sandbox_personal_values(config.folders, config.seed)
    logs = sorted(_log_dir(output_dir).rglob("*.log"))
    assert {path.name.split("-")[0] for path in logs} >= {"celery", "gunicorn"}, logs
    assert find_personal_values(logs, values) == []
    # The scan can see: these logs do name the run's folders, and a planted value is found.
    numbers = {folder["externalId"] for folder in generate(config.folders, config.seed).folders}
    texts = [path.read_text(errors="replace") for path in logs]
    assert any(number in text for text in texts for number in numbers)
    planted = tmp_path / "planted.log"
    planted.write_text(f"INFO something about {sorted(values)[0]} here\n")
    assert len(find_personal_values([planted], values)) == 1
