"""The chaos stack supervises its processes as production does: real receiver, workers and beat; each one
killed from outside (as if it had died by itself) is started again by the watchdog and counted, while the
plan's own kill of a worker is not an unexpected exit."""

from __future__ import annotations

import os
import signal

import pytest

from bench.chaos import exits_text
from bench.chaos_stack import Database, Stack, process_environment, stack_env
from tests.support.processes import free_port
from tests.support.services import wait_until


def test_the_verdict_counts_exits_and_says_which_were_restarted():
    exits = {"worker a": {"exits": 0, "restarted": 0}, "worker b": {"exits": 2, "restarted": 2},
             "beat": {"exits": 3, "restarted": 1}, "receiver": {"exits": 1, "restarted": 1}}
    assert exits_text(exits) == ("unexpected exits: worker a 0, worker b 2 (restarted), beat 3 (1 restarted), "
                                 "receiver 1 (restarted)")
    assert exits_text({}) == "unexpected exits: none watched"


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_process_that_exits_by_itself_is_restarted_and_counted(redis_server, tmp_path, output_dir):
    database = Database(sqlite=True).start()
    receiver_port = free_port()
    env = stack_env(database.url, f"{redis_server.url.rsplit('/', 1)[0]}/7", f"http://127.0.0.1:{receiver_port}",
                    tmp_path / "var")
    stack = Stack(env, receiver_port, output_dir / "logs" / "stack-supervision", worker_concurrency=1,
                  receiver_workers=1)
    try:
        with process_environment(env):
            stack.start()
            first = {name: service.process.pid for name, service in stack.services().items()}
            for name in ("worker b", "beat", "receiver"):
                os.killpg(first[name], signal.SIGKILL)  # not the plan's doing: an exit "by itself"

            def all_restarted():
                summary = stack.exit_summary()
                return all(summary[n]["restarted"] == 1 for n in ("worker b", "beat", "receiver")) and summary

            summary = wait_until(all_restarted, timeout=180, interval=0.5, message="the three restarted")
            assert [summary[n]["how"][0].split(":")[0] for n in ("worker b", "beat", "receiver")] == \
                ["exited -9"] * 3
            now = stack.services()
            assert all(now[n].alive() and now[n].process.pid != first[n] for n in ("worker b", "beat", "receiver"))

            # The plan's own kill (then its own restart) is not an unexpected exit.
            stack.kill_worker("a")
            assert stack.restart_exited() == []
            stack.start_worker("a")
            summary = stack.exit_summary()
            assert summary["worker a"]["exits"] == 0 and summary["worker b"]["exits"] == 1, summary
            assert exits_text(summary) == ("unexpected exits: worker a 0, worker b 1 (restarted), beat 1 (restarted), "
                                           "receiver 1 (restarted)")
            assert set(stack.health().values()) == {"alive"}
    finally:
        stack.stop_all()
        database.cleanup()
