"""Fixtures for the sandbox tests: one real sandbox process per session, reset before each test."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.sandbox import running_sandbox
from wedof_sandbox.app import create_app
from wedof_sandbox.state import SandboxState

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "wedof"
BASE_FOLDERS, BASE_SEED = 60, 7
DEFAULT_FAULTS = {"latency_ms": 0, "error_rate": 0, "rate_limit_rate": 0, "retry_after": 1, "drop_rate": 0,
                  "lost_answer_rate": 0}
DEFAULT_DELIVERY = {"signature_algorithm": "sha256", "signature_encoding": "hex", "duplicate_rate": 0,
                    "out_of_order_rate": 0, "bad_signature_rate": 0, "malformed_rate": 0,
                    "retry_delays": [0.05, 0.1, 0.2], "hold_seconds": 2.0, "timeout": 5.0}


@pytest.fixture(scope="session")
def registration_sample() -> dict:
    return json.loads((FIXTURES / "registration-folder.activepieces-sample.json").read_text())


@pytest.fixture(scope="session")
def certification_sample() -> dict:
    return json.loads((FIXTURES / "certification-folder.activepieces-sample.json").read_text())


@pytest.fixture(scope="session")
def sandbox_process():
    with running_sandbox(folders=BASE_FOLDERS, seed=BASE_SEED, retry_delays=[0.05, 0.1, 0.2]) as sbx:
        yield sbx


@pytest.fixture
def sbx(sandbox_process):
    """The session's sandbox, back to its seeded population with no faults, chaos or webhooks."""
    sandbox_process.control("PUT", "/faults", json=DEFAULT_FAULTS)
    sandbox_process.control("PUT", "/deliveries/config", json=DEFAULT_DELIVERY)
    sandbox_process.control("POST", "/reset", json={"folders": BASE_FOLDERS, "seed": BASE_SEED})
    return sandbox_process


@pytest.fixture(scope="module")
def app_state():
    state = SandboxState(folders=40, seed=3, delivery_threads=1)
    yield state
    state.close()


@pytest.fixture
def client(app_state):
    """Flask test client on an in-process sandbox (for exhaustive edge cases), reset each test."""
    app_state.fault_config.update(DEFAULT_FAULTS)
    app_state.reset(40, 3)
    return create_app(app_state).test_client()
