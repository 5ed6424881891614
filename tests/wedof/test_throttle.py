"""RedisThrottle on a real redis-server, in one process and across real processes."""

import json
import subprocess
import sys

import pytest

from tests.support.processes import PROJECT_ROOT
from wedof.throttle import NullThrottle, RedisThrottle, throttle_key


def assert_gcra_bound(grants: list[float], rate: float, burst: int) -> None:
    """In any span [t_i, t_j] at most ``burst + (t_j - t_i) * rate`` calls were granted."""
    grants = sorted(grants)
    for i in range(len(grants)):
        for j in range(i, len(grants)):
            allowed = burst + (grants[j] - grants[i]) * rate
            assert j - i + 1 <= allowed + 1e-6, f"{j - i + 1} grants in {grants[j] - grants[i]:.4f}s"


def run_workers(redis_url, key, rate, burst, seconds, count, extra=()):
    cmd = [
        sys.executable,
        "-m",
        "tests.wedof.throttle_worker",
        redis_url,
        key,
        str(rate),
        str(burst),
        str(seconds),
        *extra,
    ]
    procs = [
        subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(count)
    ]
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    return results


def test_key_per_connection():
    assert throttle_key(7) == "wedof:throttle:7"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"rate_per_second": 0},
        {"rate_per_second": -1},
        {"rate_per_second": float("inf")},
        {"rate_per_second": "5"},
        {"burst": 0},
        {"burst": 1.5},
        {"key": ""},
    ],
)
def test_bad_configuration_is_refused(redis_client, kwargs):
    args = {"key": "k", "rate_per_second": 5, "burst": 1, **kwargs}
    with pytest.raises(ValueError):
        RedisThrottle(redis_client, **args)


def test_burst_is_granted_at_once_then_the_next_call_must_wait(redis_client):
    throttle = RedisThrottle(redis_client, throttle_key("burst"), rate_per_second=2, burst=3)
    assert [throttle.try_acquire() for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = throttle.try_acquire()
    assert 0 < wait <= 0.5  # one emission interval at 2/s


def test_acquire_gives_up_after_its_timeout(redis_client):
    throttle = RedisThrottle(redis_client, throttle_key("timeout"), rate_per_second=0.5, burst=1)
    assert throttle.acquire(timeout=0) is True
    assert throttle.acquire(timeout=0.05) is False  # the next slot is 2 s away


def test_keys_are_independent(redis_client):
    a = RedisThrottle(redis_client, throttle_key("a"), rate_per_second=0.5)
    b = RedisThrottle(redis_client, throttle_key("b"), rate_per_second=0.5)
    assert a.try_acquire() == 0.0
    assert b.try_acquire() == 0.0
    assert a.try_acquire() > 0


def test_state_expires_from_redis(redis_client):
    throttle = RedisThrottle(redis_client, throttle_key("ttl"), rate_per_second=10)
    throttle.acquire()
    assert 0 < redis_client.pttl(throttle_key("ttl")) <= 2000


def test_blocking_acquire_in_one_process_respects_the_rate(redis_client):
    throttle = RedisThrottle(redis_client, throttle_key("single"), rate_per_second=40, burst=2)
    grants = []
    for _ in range(12):
        assert throttle.acquire(timeout=5)
        grants.append(throttle.last_granted_at)
    assert_gcra_bound(grants, rate=40, burst=2)


def test_two_processes_share_one_rate(redis_url, redis_client):
    rate, burst, seconds = 20, 2, 1.5
    per_process = run_workers(redis_url, throttle_key("two-procs"), rate, burst, seconds, count=2)
    assert all(per_process), "both processes must have been granted calls"
    grants = [t for grants in per_process for t in grants]
    span = max(grants) - min(grants)
    assert len(grants) <= rate * span + burst + 1e-6
    assert_gcra_bound(grants, rate, burst)


def test_null_throttle_never_blocks():
    throttle = NullThrottle()
    assert all(throttle.acquire(timeout=0) for _ in range(1000))
