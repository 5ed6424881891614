"""Fixtures for the Wedof client tests: one real sandbox process per module that needs it."""

import pytest

from tests.support.sandbox import running_sandbox

SANDBOX_FOLDERS, SANDBOX_SEED = 50, 1
NO_FAULTS = {"latency_ms": 0, "error_rate": 0, "rate_limit_rate": 0, "retry_after": 1, "drop_rate": 0}


@pytest.fixture(scope="session")
def sandbox_process():
    with running_sandbox(folders=SANDBOX_FOLDERS, seed=SANDBOX_SEED) as sbx:
        yield sbx


@pytest.fixture
def sandbox(sandbox_process):
    """The session's sandbox, reset to its seeded folders, no faults, request counters at zero."""
    sandbox_process.control("PUT", "/faults", json=NO_FAULTS)
    sandbox_process.control("POST", "/reset", json={"folders": SANDBOX_FOLDERS, "seed": SANDBOX_SEED})
    sandbox_process.control("POST", "/requests/reset")
    yield sandbox_process
    sandbox_process.control("PUT", "/faults", json=NO_FAULTS)
