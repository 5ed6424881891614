"""The OpenAPI document is valid, covers every admin route, and the app keeps to it under fuzzing.

schemathesis generates requests (valid and invalid) for every operation and calls the Flask app
in-process, as a super_admin, on a one-tenant world and the real Redis: no 5xx, no undocumented
status, no response that breaks its schema.
"""

from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from bdc.db import session_scope
from bdc.models import Tenant
from tests.support.sandbox import running_sandbox
from tests.webapp.conftest import TENANT_SECRETS, build_admin_world
from webapp.openapi import PATHS, PREFIX


def test_spec_lists_every_admin_route(admin_world):
    spec = admin_world.client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.0")
    documented = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    served = set()
    for rule in admin_world.app.url_map.iter_rules():
        if rule.rule.startswith("/api/integrations/wedof"):
            path = re.sub(r"<(?:int:)?(\w+)>", r"{\1}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                served.add((method, path))
    # Path parameter names match too, so compare with the names normalised.
    assert {(m, p) for m, p in documented} == served


OPERATIONS = sorted((method.upper(), PREFIX + path) for path, item in PATHS.items() for method in item)


@pytest.fixture(scope="module")
def wedof():
    """A real Wedof sandbox answering tenant A's key: live checks (reason codes, status) get real answers."""
    with running_sandbox(folders=5, seed=3, api_key=TENANT_SECRETS["a"]["api_key"]) as sandbox:
        yield sandbox


@pytest.fixture
def fuzz_world(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender, wedof):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, wedof_base_url=wedof.api_url)
    with session_scope(world.database_url) as session:
        session.delete(session.get(Tenant, world.tenants["b"]))  # one tenant: no tenant_id needed
    return world


# One pytest item (and one fresh world) per operation: a fuzzed PATCH connection can then never
# point a later live status check at a generated host.
@pytest.mark.parametrize("method,path", OPERATIONS, ids=[f"{m} {p[len(PREFIX):]}" for m, p in OPERATIONS])
def test_api_keeps_to_its_schema(fuzz_world, method, path):
    operation = schemathesis.openapi.from_wsgi("/openapi.json", fuzz_world.app)[path][method]
    token = fuzz_world.tokens["super"]

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def check(case):
        # Generated X-Tenant-Id / tenant_id values are kept: they exercise the 400/404 paths.
        headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        case.call_and_validate(headers=headers, checks=[not_a_server_error, status_code_conformance,
                                                        content_type_conformance, response_schema_conformance])

    check()
