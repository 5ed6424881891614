"""The socket half of the outbound fence: a name that resolves to an internal address is not called.

A real TCP listener on 127.0.0.1 counts the bytes it receives: a refused call must leave it with none
(not even a TLS ClientHello), and the same call under a policy that allows loopback must reach it,
so the check is seen to be what stops the first. These fail if urllib3 stops building connections
through ``ConnectionCls._new_conn`` (the hook :class:`wedof.outbound.FencedAdapter` relies on).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.support.services import wait_until
from wedof.client import WedofClient
from wedof.outbound import OutboundPolicy, OutboundRefused, address_allowed, fence_session

PRODUCTION = OutboundPolicy.for_wedof("production")
LOCAL = OutboundPolicy.for_wedof("test")


class Listener:
    """Accepts connections on 127.0.0.1 and records what arrives; answers a minimal HTTP 200."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.received = bytearray()
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.accepted += 1
            with conn:
                conn.settimeout(2)
                try:
                    data = conn.recv(65536)
                    self.received += data
                    if data:
                        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
                                     b"Connection: close\r\n\r\n{}")
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_socket_to_loopback_is_closed_before_anything_is_sent(listener, scheme):
    session = fence_session(requests.Session(), OutboundPolicy.any_public_host("production"))
    with pytest.raises(OutboundRefused) as info:
        session.get(f"{scheme}://localhost:{listener.port}/api/users/me", timeout=3, headers={"X-Api-Key": "k-123"})
    assert info.value.rule == "address" and "not a public address" in str(info.value)
    assert listener.received == b""  # no request line, no header, no TLS handshake


def test_the_same_call_reaches_the_listener_when_loopback_is_allowed(listener):
    session = fence_session(requests.Session(), OutboundPolicy.any_public_host("test"))
    assert session.get(f"http://localhost:{listener.port}/api/users/me", timeout=3).status_code == 200
    assert listener.received.startswith(b"GET /api/users/me")


def test_a_wedof_name_resolving_inside_is_refused_and_the_key_never_leaves(listener, monkeypatch):
    # The name is allowed; what it resolves to is not (a poisoned resolver, a rebinding attack).
    real_getaddrinfo = socket.getaddrinfo

    def resolve_inside(host, port, *args, **kwargs):
        if host == "www.wedof.fr":
            return real_getaddrinfo("127.0.0.1", listener.port, *args, **kwargs)
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve_inside)
    with WedofClient("https://www.wedof.fr/api", "wedof-key-never-sent", max_attempts=3, outbound=PRODUCTION,
                     backoff_initial=0.01) as client, pytest.raises(OutboundRefused) as info:
        client.users_me()
    assert info.value.rule == "address" and info.value.transient is False
    wait_until(lambda: listener.accepted >= 1, timeout=5, message="the listener saw the TCP handshake")
    time.sleep(0.3)  # a retry, had there been one, would have connected by now
    assert listener.accepted == 1 and listener.received == b""  # one attempt: a refusal is never retried


def test_the_client_refuses_a_url_outside_the_policy_before_any_call():
    with pytest.raises(OutboundRefused) as info:
        WedofClient("https://169.254.169.254/latest", "key-123456", outbound=PRODUCTION)
    assert info.value.rule == "address"
    with pytest.raises(OutboundRefused):
        WedofClient("http://127.0.0.1:9/api", "key-123456", outbound=PRODUCTION)
    assert WedofClient("http://127.0.0.1:9/api", "key-123456", outbound=LOCAL).base_url == "http://127.0.0.1:9/api"


@pytest.mark.parametrize(("address", "production", "local"), [
    ("8.8.8.8", True, True), ("2a00:1450:4007:80b::200e", True, True),
    ("127.0.0.1", False, True), ("::1", False, True), ("::ffff:127.0.0.1", False, True),
    ("10.1.2.3", False, False), ("172.16.0.1", False, False), ("192.168.1.1", False, False),
    ("169.254.169.254", False, False), ("::ffff:169.254.169.254", False, False), ("fe80::1%eth0", False, False),
    ("fd00::1", False, False), ("100.64.0.1", False, False), ("0.0.0.0", False, False), ("224.0.0.1", False, False),
    ("not an address", False, False), ("", False, False),
])
def test_which_addresses_a_socket_may_reach(address, production, local):
    assert address_allowed(address, PRODUCTION) is production
    assert address_allowed(address, LOCAL) is local
