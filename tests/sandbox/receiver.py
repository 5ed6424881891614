"""A tiny real HTTP server that records webhook deliveries, for the sandbox's delivery tests.

It can verify signatures (answering 401 on a mismatch, like a correct receiver) and fail the first
``fail_first`` requests with 500 to exercise the sandbox's retries.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from wedof_sandbox.signing import sign


@dataclass
class Received:
    headers: dict
    body: bytes
    status: int

    @property
    def delivery_id(self) -> str:
        return self.headers.get("x-wedof-delivery", "")

    def folder(self) -> dict:
        return json.loads(self.body)


class WebhookReceiver:
    def __init__(self, secret: str | None = None, algorithm: str = "sha256", encoding: str = "hex",
                 fail_first: int = 0) -> None:
        self.secret, self.algorithm, self.encoding = secret, algorithm, encoding
        self.fail_first = fail_first
        self.received: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                status = receiver._status_for(headers, body)
                with receiver._lock:
                    receiver.received.append(Received(headers, body, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _status_for(self, headers: dict, body: bytes) -> int:
        with self._lock:
            if self.fail_first > 0:
                self.fail_first -= 1
                return 500
        if self.secret is not None:
            expected = sign(body, self.secret, self.algorithm, self.encoding)
            if headers.get("x-wedof-signature") != expected:
                return 401
        try:
            json.loads(body)
        except ValueError:
            return 400
        return 200

    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.status == 200]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
