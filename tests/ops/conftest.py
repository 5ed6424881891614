"""Fixtures shared by the operations tests that run a real worker against the sandbox, once per backend."""

from __future__ import annotations

import pytest

from tests.support.stack import CeleryWorker
from tests.worker.conftest import broker, stack_env_each_backend  # noqa: F401 - fixtures, the second aliased below


@pytest.fixture(scope="module")
def stack_env(stack_env_each_backend):  # noqa: F811
    """A module using the stack runs on PostgreSQL, then on SQLite."""
    return stack_env_each_backend


@pytest.fixture(scope="module")
def worker(stack_env, output_dir):
    """One worker on both queues: the reconciliation and the sync it queues, and the webhooks."""
    worker = CeleryWorker(stack_env, queues="events,sync", concurrency=2, log_dir=output_dir / "logs").start()
    yield worker
    worker.stop()
