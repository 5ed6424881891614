"""Security headers on every response, set by one ``after_request`` hook.

The integration page gets a Content-Security-Policy that allows only its own static files: no inline
script, no inline style, no eval, nothing loaded from elsewhere, and it cannot be framed. Every other
response (admin API JSON, webhook answers, health, metrics, static files) gets the locked-down policy
an API should carry, ``default-src 'none'``. The header lists are built once at import: the webhook
receiver is the hot path, so the hook only copies a few precomputed pairs.
"""

from __future__ import annotations

from flask import Flask, Response, request

PAGE_BLUEPRINT = "integration_page"

# The page's script and style come from /static only; fetch() talks to the admin API on the same origin.
# Charts are SVG built with createElementNS and sized through CSSOM (element.style), which CSP allows.
PAGE_POLICY = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    "connect-src 'self'",
    "form-action 'self'",
    "base-uri 'none'",
    "frame-ancestors 'none'",
])
API_POLICY = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

_COMMON = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),  # for browsers that ignore frame-ancestors
    # no-referrer rather than strict-origin-when-cross-origin: the page's first address carries the admin's
    # token (?token=), and nothing here needs a Referer, so none is ever sent, not even our own origin.
    ("Referrer-Policy", "no-referrer"),
)
PAGE_HEADERS = (("Content-Security-Policy", PAGE_POLICY), *_COMMON)
API_HEADERS = (("Content-Security-Policy", API_POLICY), *_COMMON)


def _add_security_headers(response: Response) -> Response:
    headers = response.headers
    for name, value in PAGE_HEADERS if request.blueprint == PAGE_BLUEPRINT else API_HEADERS:
        headers[name] = value
    return response


def init_app(app: Flask) -> None:
    app.after_request(_add_security_headers)
