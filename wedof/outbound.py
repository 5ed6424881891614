"""Where outbound calls may go: a connection's ``base_url`` names Wedof, and every socket is checked.

A tenant admin writes ``base_url``; every later call carries the tenant's API key to it. So the URL
must be ``https://`` on an allowed host (Wedof's production and staging hosts, plus hosts an
operator adds with ``WEDOF_ALLOWED_HOSTS``); plain ``http`` and loopback are accepted only in
development and test, where the sandbox runs on 127.0.0.1. Names are not enough (a name can resolve
to a private address, or change between a check and the call), so :class:`FencedAdapter` also checks
the address each new socket actually connected to, before a byte of the request is written.

One rule set for every entry (admin API, CLI, environment bootstrap, the client itself); a refusal
names its rule (:data:`RULES`) so a 400 can say which one failed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from wedof.errors import WedofError

# Wedof's production API and its staging hosts (see the project's notes on the real API).
WEDOF_HOSTS = ("www.wedof.fr", "www.staging.wedof.fr", "staging.wedof.fr")
MAX_URL_LENGTH = 500
RULES = ("malformed", "scheme", "userinfo", "host", "port", "address")
LOCAL_ENVIRONMENTS = ("development", "test")
_LOOPBACK_NAMES = frozenset({"localhost"})
_HOSTNAME = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class OutboundRefused(WedofError, ValueError):
    """A URL or an address outside the allowed set; never retried. ``rule`` is one of :data:`RULES`."""

    transient = False

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class OutboundPolicy:
    """``allowed_hosts``: exact host names (None: any public host); ``allow_local``: http and loopback."""

    allowed_hosts: frozenset[str] | None
    allow_local: bool

    @classmethod
    def for_wedof(cls, app_env: str, extra_hosts: tuple[str, ...] = ()) -> OutboundPolicy:
        return cls(frozenset(WEDOF_HOSTS) | frozenset(extra_hosts), app_env in LOCAL_ENVIRONMENTS)

    @classmethod
    def any_public_host(cls, app_env: str) -> OutboundPolicy:
        return cls(None, app_env in LOCAL_ENVIRONMENTS)


def wedof_policy() -> OutboundPolicy:
    """The policy the settings give (``APP_ENV``, ``WEDOF_ALLOWED_HOSTS``)."""
    from bdc.settings import get_settings

    settings = get_settings()
    return OutboundPolicy.for_wedof(settings.app_env, settings.wedof_allowed_hosts)


def valid_host_name(name: str) -> bool:
    """A DNS name of at least two labels, lowercase ASCII, not an address in disguise (``0x7f.1``)."""
    return bool(_HOSTNAME.fullmatch(name))


def check_base_url(url: object, policy: OutboundPolicy) -> str:
    """``url`` normalised (lowercase scheme and host, no trailing slash), or :class:`OutboundRefused`."""
    if not isinstance(url, str):
        raise OutboundRefused("malformed", "base_url must be a string")
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH or any(c.isspace() or ord(c) < 32 or ord(c) == 127 or c == "\\"
                                                      for c in text):
        raise OutboundRefused("malformed", f"base_url must be one URL of at most {MAX_URL_LENGTH} characters, "
                                           "without spaces or backslashes")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise OutboundRefused("malformed", "base_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.netloc:
        raise OutboundRefused("scheme", "base_url must be an https:// URL, e.g. https://www.wedof.fr/api")
    if "@" in parts.netloc:
        raise OutboundRefused("userinfo", "base_url must not hold a user name or password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise OutboundRefused("malformed", "base_url must not have a query or a fragment")
    host = _ascii_host(parts.hostname or "")
    local = policy.allow_local and _is_loopback(host)
    if scheme == "http" and not local:
        raise OutboundRefused("scheme", "base_url must use https:// (http:// is accepted only to loopback, "
                                        "in development and test)")
    if not local:
        _check_remote_host(host, policy)
        if port not in (None, 443):
            raise OutboundRefused("port", "base_url must use the default https port (443)")
    shown_host = f"[{host}]" if ":" in host else host
    netloc = shown_host if port is None else f"{shown_host}:{port}"
    return f"{scheme}://{netloc}{parts.path}".rstrip("/")


def address_allowed(address: str, policy: OutboundPolicy) -> bool:
    """Whether a socket may talk to ``address``: a public one, or loopback when local calls are allowed."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return policy.allow_local
    return ip.is_global and not ip.is_multicast


def _ascii_host(host: str) -> str:
    host = host.rstrip(".")
    if host.isascii():
        return host.lower()
    try:
        return host.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise OutboundRefused("host", "base_url's host is not a valid domain name") from None


def _is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _check_remote_host(host: str, policy: OutboundPolicy) -> None:
    if _looks_like_address(host):
        raise OutboundRefused("address", "base_url must name a host, not an IP address")
    if policy.allowed_hosts is None:
        if not valid_host_name(host) or host.endswith(".localhost"):
            raise OutboundRefused("host", "the URL must name a public host")
        return
    if host not in policy.allowed_hosts:
        allowed = ", ".join(sorted(policy.allowed_hosts))
        raise OutboundRefused("host", f"base_url's host must be one of: {allowed} "
                                      "(operators can add hosts with WEDOF_ALLOWED_HOSTS)")


def _looks_like_address(host: str) -> bool:
    """An IP literal in any notation resolvers accept: dotted, integer, octal or hex parts, IPv6."""
    if ":" in host:
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    return all(re.fullmatch(r"(0x[0-9a-f]*|[0-9]+)", label) for label in host.split(".") if label)


# --- the socket check ---------------------------------------------------------------------------

def _check_peer(sock, host: str, policy: OutboundPolicy) -> None:
    try:
        peer = sock.getpeername()[0]
    except OSError:
        peer = ""
    if not address_allowed(peer, policy):
        sock.close()
        raise OutboundRefused("address", f"{host} resolved to {peer or 'an unknown address'}, which is not a "
                                         "public address; the call was not sent")


def _fenced_pools(policy: OutboundPolicy) -> dict[str, type]:
    """urllib3 pool classes whose connections check the peer address right after connecting."""

    class FencedHTTPConnection(HTTPConnection):
        def _new_conn(self):
            sock = super()._new_conn()
            _check_peer(sock, self.host, policy)
            return sock

    class FencedHTTPSConnection(HTTPSConnection):
        def _new_conn(self):  # before the TLS handshake: nothing but the TCP handshake has happened
            sock = super()._new_conn()
            _check_peer(sock, self.host, policy)
            return sock

    class FencedHTTPPool(HTTPConnectionPool):
        ConnectionCls = FencedHTTPConnection

    class FencedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = FencedHTTPSConnection

    return {"http": FencedHTTPPool, "https": FencedHTTPSPool}


class FencedAdapter(HTTPAdapter):
    """A requests transport adapter whose sockets only reach addresses ``policy`` allows."""

    def __init__(self, policy: OutboundPolicy, **kwargs) -> None:
        self._policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _fenced_pools(self._policy)


def fence_session(session, policy: OutboundPolicy):
    """Mount :class:`FencedAdapter` on both schemes of a ``requests.Session``; returns the session."""
    adapter = FencedAdapter(policy)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
