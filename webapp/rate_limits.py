"""Rate limits on the admin API and the integration page (flask-limiter, counted in Redis).

Two limits on every request to those two blueprints: ``ADMIN_RATE_LIMIT`` per user (the identity of
a token whose signature and expiry check out, so a forged ``sub`` cannot spend someone else's
allowance) and ``ADMIN_RATE_LIMIT_PER_ADDRESS`` per remote address (which also covers requests
without a valid token, e.g. someone guessing tokens). Nothing else is limited here: the webhook
receiver has its own bad-signature guard (webapp.receiver.flood) and Wedof's genuine deliveries must
all land; /healthz, /readyz and /metrics are for probes and scrapers.

Past a limit: 429 ``{"error": "rate_limited", ...}`` with ``Retry-After`` (seconds until the window
ends). Fixed windows: the count resets at each window's start, so Retry-After is exact.

Redis unreachable: the limits are kept in this process's memory (flask-limiter's in-memory fallback)
until Redis answers again. Chosen over ``swallow_errors``, which would drop limiting altogether, and
over failing closed, which would turn a Redis hiccup into refused admin requests. (Token revocation,
which also needs Redis, does fail closed: see webapp.auth.)

Behind a reverse proxy, the remote address is the proxy's unless werkzeug's ProxyFix is configured.

A limiter is made per app (its limits and storage follow that app's settings), kept in
``app.extensions["admin_rate_limiter"]``.
"""

from __future__ import annotations

import time

from flask import Blueprint, Flask, current_app, g
from flask_jwt_extended import get_jwt_identity, verify_jwt_in_request
from flask_limiter import Limiter, RateLimitExceeded
from flask_limiter.util import get_remote_address

from webapp.errors import error_response

KEY_PREFIX = "admin-api"
EXTENSION = "admin_rate_limiter"
_NO_USER = ""


def _storage_uri(redis_url: str) -> str:
    # limits spells a Redis socket redis+unix://; REDIS_URL may say unix:// as redis-py does.
    return "redis+" + redis_url if redis_url.startswith("unix://") else redis_url


def _verified_user() -> str:
    """The identity of the request's token when it verifies, else "" (cached for the request)."""
    if "_rate_limit_user" not in g:
        user = _NO_USER
        try:
            verify_jwt_in_request(optional=True)
            identity = get_jwt_identity()
            if isinstance(identity, str) and identity:
                user = identity
        except Exception:  # any refusal is the view's to answer (401, 503): here it only means "no user"
            user = _NO_USER
        g._rate_limit_user = user
    return g._rate_limit_user


def _user_key() -> str:
    return "user:" + _verified_user()


def _no_verified_user() -> bool:
    return _verified_user() == _NO_USER


def _address_key() -> str:
    return "address:" + (get_remote_address() or "unknown")


def _rate_limited(exc: RateLimitExceeded):
    limiter: Limiter = current_app.extensions[EXTENSION]
    breached = limiter.current_limit
    retry_after = 60
    if breached is not None:
        try:
            retry_after = max(1, int(breached.reset_at - time.time()))
        except Exception:  # the window's end could not be read (storage away): a minute is a safe guess
            pass
    response, status = error_response(429, "rate_limited",
                                      f"Too many requests ({exc.limit.limit}); retry in {retry_after} s.",
                                      retry_after=retry_after)
    response.headers["Retry-After"] = str(retry_after)
    return response, status


def limit_blueprints(limiter: Limiter, blueprints: list[Blueprint]) -> None:
    # Shared limits: one allowance across every route of these blueprints, not one per route. The
    # values are read per request, from the settings of the app serving it.
    for blueprint in blueprints:
        limiter.shared_limit(lambda: current_app.config["SETTINGS"].admin_rate_limit, "admin-user",
                             key_func=_user_key, exempt_when=_no_verified_user)(blueprint)
        limiter.shared_limit(lambda: current_app.config["SETTINGS"].admin_rate_limit_per_address, "admin-address",
                             key_func=_address_key)(blueprint)


def init_app(app: Flask, blueprints: list[Blueprint]) -> Limiter:
    limiter = Limiter(
        key_func=_address_key,
        app=app,
        storage_uri=_storage_uri(app.config["SETTINGS"].redis_url),
        # Short timeouts: a request waits on Redis before falling back to memory.
        storage_options={"socket_timeout": 0.5, "socket_connect_timeout": 0.5},
        strategy="fixed-window",
        key_prefix=KEY_PREFIX,
        in_memory_fallback_enabled=True,
        headers_enabled=False,  # Retry-After is set on the 429 alone (flask-limiter's would be on every answer)
        default_limits=[],
    )
    app.extensions[EXTENSION] = limiter
    limit_blueprints(limiter, blueprints)
    app.register_error_handler(RateLimitExceeded, _rate_limited)
    return limiter
