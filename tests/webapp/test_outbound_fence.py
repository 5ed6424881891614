"""A connection's base_url names Wedof and nothing else, at every entry: admin API, CLI, environment, use.

The tenant's API key travels to that URL on every call, so a tenant admin must not be able to point it
at the cloud's metadata service, a LAN host or their own server.
"""

from __future__ import annotations

import ipaddress
import string

import pytest
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from urllib3.util import parse_url

from bdc.db import session_scope
from bdc.models import WedofConnection
from bdc.settings import SettingsError, load_settings, reset_settings_cache
from tests.webapp.conftest import build_admin_world
from webapp.cli import main as cli_main
from wedof.outbound import WEDOF_HOSTS

WEDOF_HOME = "https://www.wedof.fr/api"  # what the seeded connections point at, as in production
PRODUCTION = {"APP_ENV": "production", "WEDOF_API_URL": "https://www.wedof.fr/api"}


@pytest.fixture
def production_world(app_env, db_url, redis_url, redis_client, fresh_task_sender):
    """The admin API with APP_ENV=production, on each database in turn."""
    return build_admin_world(app_env, fresh_task_sender, db_url, redis_url, WEDOF_HOME, **PRODUCTION)


@pytest.fixture
def production_world_sqlite(app_env, sqlite_db_url, redis_url, redis_client, fresh_task_sender):
    # Hundreds of calls by one admin: above the admin API's rate limit, which is not under test here.
    return build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, WEDOF_HOME, **PRODUCTION,
                             ADMIN_RATE_LIMIT="100000/minute", ADMIN_RATE_LIMIT_PER_ADDRESS="100000/minute")


def _stored_base_url(world, name: str = "a") -> str:
    with session_scope(world.database_url) as session:
        return session.get(WedofConnection, world.connections[name]).base_url


REFUSED = [
    ("http://169.254.169.254/latest", "scheme"),  # the report: plain http to the metadata service
    ("https://169.254.169.254/latest", "address"),
    ("https://[::ffff:169.254.169.254]/latest", "address"),
    ("https://[fd00::1]/api", "address"),
    ("https://10.0.0.7/api", "address"),
    ("https://2130706433/api", "address"),  # 127.0.0.1 as one integer
    ("https://0x7f.1/api", "address"),
    ("https://0177.0.0.1/api", "address"),
    ("https://127.1/api", "address"),
    ("https://localhost/api", "host"),
    ("https://evil.example.com/api", "host"),
    ("https://www.wedof.fr.evil.example.com/api", "host"),
    ("https://wedof.fr/api", "host"),
    ("https://www.wеdof.fr/api", "host"),  # a Cyrillic "е": an IDN look-alike
    ("https://www.wedof.fr@evil.example.com/api", "userinfo"),
    ("https://user:pw@www.wedof.fr/api", "userinfo"),
    ("https://www.wedof.fr:8443/api", "port"),
    ("https://www.wedof.fr:99999/api", "malformed"),
    ("ftp://www.wedof.fr/api", "scheme"),
    ("javascript:alert(1)", "scheme"),
    ("www.wedof.fr/api", "scheme"),
    ("https://www.wedof.fr/api?next=http://evil", "malformed"),
    ("https://www.wedof.fr/api#x", "malformed"),
    ("https://www.wedof.fr\\@evil.example.com/api", "malformed"),
    ("https://www.wedof.fr/api\r\nX-Evil: 1", "malformed"),
    ("", "malformed"),
]


@pytest.mark.parametrize(("url", "rule"), REFUSED)
def test_the_admin_api_refuses_a_base_url_outside_wedof_naming_the_rule(production_world, url, rule):
    before = _stored_base_url(production_world)
    response = production_world.call("PATCH", "/connection", who="admin_a", json={"base_url": url})
    body = response.get_json()
    assert response.status_code == 400, body
    assert (body["error"], body["rule"], body["fields"]) == ("base_url_refused", rule, {"base_url": rule})
    assert f"({rule} rule)" in body["message"]
    assert _stored_base_url(production_world) == before


@pytest.mark.parametrize(("url", "stored"), [
    ("https://www.wedof.fr/api", "https://www.wedof.fr/api"),
    ("  HTTPS://WWW.Wedof.FR./api/  ", "https://www.wedof.fr/api"),
    ("https://www.wedof.fr:443/api", "https://www.wedof.fr:443/api"),
    ("https://www.staging.wedof.fr/api", "https://www.staging.wedof.fr/api"),
    ("https://staging.wedof.fr/api", "https://staging.wedof.fr/api"),
])
def test_wedof_hosts_are_accepted_and_stored_normalised(production_world, url, stored):
    response = production_world.call("PATCH", "/connection", who="admin_a", json={"base_url": url})
    assert response.status_code == 200, response.get_json()
    assert _stored_base_url(production_world) == stored


def test_an_operator_extends_the_hosts_a_tenant_admin_cannot(app_env, sqlite_db_url, redis_url, redis_client,
                                                              fresh_task_sender):
    world = build_admin_world(app_env, fresh_task_sender, sqlite_db_url, redis_url, **PRODUCTION,
                              wedof_allowed_hosts="wedof-proxy.organisme.example, other.example.org")
    assert world.call("PATCH", "/connection", who="admin_a",
                      json={"base_url": "https://wedof-proxy.organisme.example/api"}).status_code == 200
    refused = world.call("PATCH", "/connection", who="admin_a", json={"wedof_allowed_hosts": "evil.example.com"})
    assert refused.status_code == 422 and refused.get_json()["fields"] == {"wedof_allowed_hosts": "unknown field"}


def test_loopback_and_http_only_in_development_and_test(admin_world):
    ok = admin_world.call("PATCH", "/connection", who="admin_a", json={"base_url": "http://127.0.0.1:8765/api"})
    assert ok.status_code == 200 and _stored_base_url(admin_world) == "http://127.0.0.1:8765/api"
    assert admin_world.call("PATCH", "/connection", who="admin_a",
                            json={"base_url": "http://localhost:8765/api"}).status_code == 200
    for url, rule in (("http://10.0.0.7/api", "scheme"), ("https://169.254.169.254/api", "address"),
                      ("http://www.wedof.fr/api", "scheme")):
        response = admin_world.call("PATCH", "/connection", who="admin_a", json={"base_url": url})
        assert (response.status_code, response.get_json()["rule"]) == (400, rule), url


def test_a_stored_url_that_breaks_the_rule_is_refused_at_use_not_called(production_world):
    # Stored while an operator allowed the host; the setting has since changed.
    with session_scope(production_world.database_url) as session:
        session.get(WedofConnection, production_world.connections["a"]).base_url = "https://old-proxy.example/api"
    response = production_world.call("POST", "/reconcile", who="admin_a", json={})
    body = response.get_json()
    assert response.status_code == 409 and body["error"] == "connection_not_usable" and body["rule"] == "host"
    sync = production_world.call("POST", "/sync", who="admin_a", json={})
    assert (sync.status_code, sync.get_json()["rule"]) == (409, "host")
    status = production_world.call("GET", "/status", who="admin_a").get_json()
    assert status["connected"] is False and "host must be one of" in status["error"]

    from worker.connections import ConnectionNotUsable, client_for

    with session_scope(production_world.database_url) as session:
        connection = session.get(WedofConnection, production_world.connections["a"])
        with pytest.raises(ConnectionNotUsable, match=r"base_url is refused \(host rule\)"):
            client_for(connection)


# --- the CLI and the environment ---


def test_the_cli_refuses_a_hostile_wedof_url(app_env, sqlite_db_url, redis_url, capsys):
    app_env(database_url=sqlite_db_url, redis_url=redis_url, **PRODUCTION)
    code = cli_main(["create-tenant", "--name", "Acme", "--slug", "acme", "--admin-email", "a@acme.test",
                     "--wedof-api-url", "https://169.254.169.254/latest", "--wedof-api-key", "acme-key-123456"])
    assert code == 2
    assert "refused (address rule)" in capsys.readouterr().err
    with session_scope(sqlite_db_url) as session:
        assert session.scalars(select(WedofConnection)).all() == []


@pytest.mark.parametrize(("env", "message"), [
    ({"APP_ENV": "production", "WEDOF_API_URL": "http://127.0.0.1:8765/api"}, "WEDOF_API_URL is refused (scheme)"),
    ({"APP_ENV": "production", "WEDOF_API_URL": "https://metadata.google.internal/computeMetadata"},
     "WEDOF_API_URL is refused (host)"),
    ({"APP_ENV": "test", "WEDOF_API_URL": "https://10.1.2.3/api"}, "WEDOF_API_URL is refused (address)"),
    ({"WEDOF_ALLOWED_HOSTS": "https://proxy.example/api"}, "WEDOF_ALLOWED_HOSTS must be"),
    ({"WEDOF_ALLOWED_HOSTS": "10.0.0.1"}, "WEDOF_ALLOWED_HOSTS must be"),
])
def test_the_environment_is_held_to_the_same_rule(env, message):
    base = {"JWT_SECRET_KEY": "x" * 32, "SECRET_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    with pytest.raises(SettingsError) as info:
        load_settings({**base, **env}, env_file=None)
    assert message in str(info.value)
    reset_settings_cache()


# --- random URLs: nothing outside the allowed set is ever stored ---

_LABEL = st.text(alphabet=string.ascii_lowercase + string.digits + "-", min_size=1, max_size=12)
_IPV4 = st.integers(min_value=0, max_value=2**32 - 1)
_HOSTS = st.one_of(
    st.sampled_from(WEDOF_HOSTS + ("wedof.fr", "localhost", "metadata.google.internal", "wedof.fr.evil.example")),
    st.sampled_from(WEDOF_HOSTS).map(str.upper),
    st.sampled_from(WEDOF_HOSTS).map(lambda h: h + "."),
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    _IPV4.map(lambda n: str(ipaddress.IPv4Address(n))),
    _IPV4.map(str),  # one integer
    _IPV4.map(hex),  # one hex number
    _IPV4.map(lambda n: ".".join(f"0{int(p):o}" for p in str(ipaddress.IPv4Address(n)).split("."))),  # octal
    _IPV4.map(lambda n: ".".join(hex(int(p)) for p in str(ipaddress.IPv4Address(n)).split("."))),
    st.integers(min_value=0, max_value=2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n)}]"),
    _IPV4.map(lambda n: f"[::ffff:{ipaddress.IPv4Address(n)}]"),
    st.text(alphabet="wedofrаеоі.-ßü", min_size=1, max_size=16),  # IDN and look-alikes
)
_URLS = st.one_of(
    st.builds(
        lambda scheme, userinfo, host, port, path: f"{scheme}{userinfo}{host}{port}{path}",
        st.sampled_from(["https://", "http://", "HTTPS://", "ftp://", "//", "", "https:/", "file://"]),
        st.sampled_from(["", "user@", "user:pw@", "www.wedof.fr@", ":@"]),
        _HOSTS,
        st.one_of(st.just(""), st.integers(min_value=0, max_value=70000).map(lambda p: f":{p}")),
        st.sampled_from(["/api", "", "/", "/api/", "/api?x=1", "/api#f", "/%2e%2e/", "\\@evil.example/"]),
    ),
    st.text(max_size=60),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url=_URLS)
def test_random_base_urls_outside_the_allowed_set_are_never_stored(production_world_sqlite, url):
    world = production_world_sqlite
    response = world.call("PATCH", "/connection", who="admin_a", json={"base_url": url})
    assert response.status_code in (200, 400), (url, response.get_json())
    stored = parse_url(_stored_base_url(world))
    # An oracle independent of the code under test: urllib3's own parser, the allowed set written out.
    assert stored.scheme == "https" and stored.auth is None, (url, stored)
    assert stored.host in WEDOF_HOSTS and stored.port in (None, 443), (url, stored)
    assert not stored.query and not stored.fragment, (url, stored)
