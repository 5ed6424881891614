"""Fixtures for the web application's tests: connections, signed deliveries, a configured app.

Shared by the receiver and admin API tests; add fixtures, do not change existing ones.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bdc.db import session_scope
from bdc.models import Tenant, WedofConnection
from wedof.signatures import compute_signature

FIXTURES_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "wedof"
SAMPLE_FOLDER_PATH = FIXTURES_DIR / "registration-folder.activepieces-sample.json"
WEBHOOK_SECRET = "receiver-test-secret-5b1d7c0e9a"


def create_connection(database_url: str, *, secret: str | None = WEBHOOK_SECRET, algorithm: str = "sha256",
                      enabled: bool = True, is_env_default: bool = False, slug: str | None = None) -> int:
    """A tenant and its Wedof connection in ``database_url``; returns the connection id."""
    with session_scope(database_url) as session:
        tenant = Tenant(name="Receiver test organisation", slug=slug or f"t-{id(object())}")
        session.add(tenant)
        session.flush()
        connection = WedofConnection(tenant_id=tenant.id, api_key="key", webhook_secret=secret,
                                     signature_algorithm=algorithm, enabled=enabled, is_env_default=is_env_default)
        session.add(connection)
        session.flush()
        return connection.id


def wedof_delivery_headers(body: bytes, *, event: str = "registrationFolder.updated", delivery: str | None = "dlv-1",
                           secret: str | None = WEBHOOK_SECRET, algorithm: str = "sha256",
                           content_type: str = "application/json") -> dict[str, str]:
    """Headers of a real-format Wedof delivery of ``body``, signed with ``secret`` (unsigned if None)."""
    headers = {"Content-Type": content_type, "X-Wedof-Event": event}
    if delivery is not None:
        headers["X-Wedof-Delivery"] = delivery
    if secret is not None:
        headers["X-Wedof-Signature"] = compute_signature(secret, body, algorithm)
    return headers


def folder_body(external_id: str = "4270885603", **fields) -> bytes:
    return json.dumps({"externalId": external_id, "state": "inTraining", "lastUpdate": "2025-02-03T09:12:44.517Z",
                       **fields}).encode()


def queued_messages(redis_client, queue: str = "events") -> list[dict]:
    """The Celery messages waiting in a queue's Redis list: ``{"task", "id", "args"}`` each, oldest first."""
    messages = []
    for raw in reversed(redis_client.lrange(queue, 0, -1)):  # kombu LPUSHes and the worker pops from the right
        message = json.loads(raw)
        args, _kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        messages.append({"task": message["headers"]["task"], "id": message["headers"]["id"], "args": args})
    return messages


@dataclass
class Receiver:
    """A configured app, its test client, and a database holding one signed connection."""

    app: object
    client: object
    database_url: str
    connection_id: int
    secret: str = WEBHOOK_SECRET
    extra: dict = field(default_factory=dict)

    @property
    def path(self) -> str:
        return f"/api/webhooks/wedof/{self.connection_id}"

    def post(self, body: bytes, path: str | None = None, **header_options):
        headers = wedof_delivery_headers(body, **{"secret": self.secret, **header_options})
        return self.client.post(path or self.path, data=body, headers=headers)

    def events(self) -> list:
        from sqlalchemy import select

        from bdc.models import WebhookEvent

        with session_scope(self.database_url) as session:
            rows = session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)).all()
            session.expunge_all()
            return list(rows)


def build_receiver(app_env, rebuild_task_sender, database_url: str, redis_url: str, **env) -> Receiver:
    from webapp.app import create_app
    from webapp.receiver.connections import forget_cached_connections

    app_env(database_url=database_url, redis_url=redis_url, **env)
    rebuild_task_sender()
    forget_cached_connections()
    connection_id = create_connection(database_url)
    app = create_app({"TESTING": True})
    return Receiver(app=app, client=app.test_client(), database_url=database_url, connection_id=connection_id)


@pytest.fixture
def receiver(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender) -> Receiver:
    """The receiver on a fresh SQLite database and the real (flushed) Redis."""
    return build_receiver(app_env, fresh_task_sender, sqlite_db_url, redis_url)


@pytest.fixture
def receiver_any_db(app_env, db_url, redis_url, redis_client, fresh_task_sender) -> Receiver:
    """The receiver on each backend in turn (SQLite, PostgreSQL) and the real (flushed) Redis."""
    return build_receiver(app_env, fresh_task_sender, db_url, redis_url)


# -- admin API and integration page -----------------------------------------------------------------

ADMIN_API = "/api/integrations/wedof"
# Recognisable secrets: tests scan every response and log line for them.
TENANT_SECRETS = {
    "a": {"api_key": "wedof-api-key-AAAA-8f3b2c1d", "webhook_secret": "whsec-tenant-a-77e1c9d0a4"},
    "b": {"api_key": "wedof-api-key-BBBB-1a2b3c4d", "webhook_secret": "whsec-tenant-b-0c9d8e7f6a"},
}


@dataclass
class AdminWorld:
    """Two tenants (a, b) with connections, admins, a trainer, events, records; tokens for each role."""

    app: object
    client: object
    database_url: str
    tenants: dict
    connections: dict
    tokens: dict
    ids: dict

    def headers(self, who: str | None) -> dict:
        return {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}

    def call(self, method: str, path: str, who: str | None = "super", json=None, **kwargs):
        return self.client.open(ADMIN_API + path, method=method, json=json, headers=self.headers(who), **kwargs)


def seed_admin_world(database_url: str, wedof_base_url: str = "http://127.0.0.1:9/api") -> dict:
    """Write the two-tenant population; returns the ids the tests use."""
    from datetime import UTC, datetime, timedelta

    from bdc.models import (
        Beneficiary,
        Enrollment,
        EventStatus,
        Program,
        SyncRun,
        SyncStatus,
        User,
        UserRole,
        WebhookEvent,
    )

    now = datetime.now(UTC)
    ids: dict = {}
    with session_scope(database_url) as session:
        super_admin = User(email="root@bdc.test", role=UserRole.SUPER_ADMIN, first_name="Root")
        session.add(super_admin)
        for name in ("a", "b"):
            tenant = Tenant(name=f"Organisme {name.upper()}", slug=f"org-{name}")
            session.add(tenant)
            session.flush()
            connection = WedofConnection(tenant_id=tenant.id, base_url=wedof_base_url, **TENANT_SECRETS[name])
            session.add(connection)
            admin = User(tenant_id=tenant.id, email=f"admin-{name}@bdc.test", role=UserRole.TENANT_ADMIN)
            trainer = User(tenant_id=tenant.id, email=f"trainer-{name}@bdc.test", role=UserRole.TRAINER)
            student = User(tenant_id=tenant.id, email=f"stagiaire-{name}@bdc.test", first_name="Camille",
                           last_name=f"Martin-{name}", role=UserRole.STUDENT)
            session.add_all([admin, trainer, student])
            session.flush()
            beneficiary = Beneficiary(tenant_id=tenant.id, user_id=student.id, external_id=f"att-{name}")
            bilan = Program(tenant_id=tenant.id, name=f"Bilan de compétences {name}", category="bilan_competences",
                            external_id=f"ta-bilan-{name}")
            other = Program(tenant_id=tenant.id, name=f"Anglais {name}", category="langues",
                            external_id=f"ta-en-{name}")
            session.add_all([beneficiary, bilan, other])
            session.flush()
            in_training = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=bilan.id,
                                     external_id=f"10{ord(name)}0000001", wedof_state="inTraining", progress=10)
            accepted = Enrollment(tenant_id=tenant.id, beneficiary_id=beneficiary.id, program_id=other.id,
                                  external_id=f"10{ord(name)}0000002", wedof_state="accepted")
            session.add_all([in_training, accepted])
            events = {}
            for label, status, queued_at in (("failed", EventStatus.FAILED, None),
                                             ("processed", EventStatus.PROCESSED, None),
                                             ("processing", EventStatus.PROCESSING, None),
                                             ("stuck", EventStatus.QUEUED, now - timedelta(hours=1)),
                                             ("fresh", EventStatus.QUEUED, now)):
                event = WebhookEvent(
                    connection=connection, delivery_id=f"dlv-{name}-{label}", event_type="registrationFolder.updated",
                    headers={"X-Wedof-Event": "registrationFolder.updated",
                             "X-Wedof-Signature": "sha256=" + "ab" * 32, "Content-Type": "application/json"},
                    body=folder_body(f"10{ord(name)}0000001").decode(), folder_external_id=f"10{ord(name)}0000001",
                    status=status, attempts=3 if status == EventStatus.FAILED else 1, queued_at=queued_at,
                    received_at=now - timedelta(hours=2), last_error="HTTP 404 folder not found" if label == "failed" else None,
                    task_id=f"old-task-{name}-{label}")
                session.add(event)
                events[label] = event
            run = SyncRun(connection=connection, status=SyncStatus.SUCCEEDED, fetched=5, applied=4, unchanged=1,
                          total=5, pages=1, started_at=now - timedelta(minutes=30), finished_at=now - timedelta(minutes=29))
            session.add(run)
            session.flush()
            ids[name] = {
                "tenant": tenant.id, "connection": connection.id, "admin": admin.id, "trainer": trainer.id,
                "beneficiary": beneficiary.id, "bilan_enrollment": in_training.id, "accepted_enrollment": accepted.id,
                "events": {label: event.id for label, event in events.items()}, "run": run.id,
            }
        ids["super"] = super_admin.id
    return ids


def make_tokens(app, database_url: str, ids: dict) -> dict:
    """A token per role: super, admin_a, admin_b, trainer_a, expired, forged (wrong key), and more."""
    from datetime import timedelta

    import jwt as pyjwt
    from flask_jwt_extended import create_access_token

    def token(user_id, role, tenant_id, expires=timedelta(hours=1)):
        return create_access_token(identity=str(user_id), additional_claims={"role": role, "tenant_id": tenant_id},
                                   expires_delta=expires)

    with app.app_context():
        tokens = {
            "super": token(ids["super"], "super_admin", None),
            "admin_a": token(ids["a"]["admin"], "tenant_admin", ids["a"]["tenant"]),
            "admin_b": token(ids["b"]["admin"], "tenant_admin", ids["b"]["tenant"]),
            "trainer_a": token(ids["a"]["trainer"], "trainer", ids["a"]["tenant"]),
            "expired": token(ids["super"], "super_admin", None, expires=timedelta(seconds=-30)),
            # A BDC account we do not hold a row for: trusted on its signed claims.
            "bdc_only_admin_a": token("bdc-user-42", "tenant_admin", ids["a"]["tenant"]),
        }
    tokens["forged"] = pyjwt.encode({"sub": str(ids["super"]), "role": "super_admin", "type": "access",
                                     "fresh": False, "jti": "x", "exp": 4102444800},
                                    "not-the-shared-secret-at-all-0123456789", algorithm="HS256")
    tokens["garbage"] = "not.a.jwt"
    return tokens


def build_admin_world(app_env, rebuild_task_sender, database_url: str, redis_url: str,
                      wedof_base_url: str = "http://127.0.0.1:9/api", **env) -> AdminWorld:
    from webapp.app import create_app

    app_env(database_url=database_url, redis_url=redis_url, flower_url="http://127.0.0.1:5555",
            public_base_url="http://127.0.0.1:8000", **env)
    rebuild_task_sender()
    ids = seed_admin_world(database_url, wedof_base_url)
    app = create_app({"TESTING": True})
    tokens = make_tokens(app, database_url, ids)
    tenants = {name: ids[name]["tenant"] for name in ("a", "b")}
    connections = {name: ids[name]["connection"] for name in ("a", "b")}
    return AdminWorld(app=app, client=app.test_client(), database_url=database_url, tenants=tenants,
                      connections=connections, tokens=tokens, ids=ids)


@pytest.fixture
def admin_world(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender) -> AdminWorld:
    """The admin API on a fresh SQLite database, two tenants, and the real (flushed) Redis."""
    return build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url)


@pytest.fixture
def admin_world_any_db(app_env, db_url, redis_url, redis_client, fresh_task_sender) -> AdminWorld:
    """The same world on each backend in turn (SQLite, PostgreSQL)."""
    return build_admin_world(app_env, fresh_task_sender, db_url, redis_url)
