"""A webhook receiver for tests and the bench: a small HTTP server on loopback that verifies
every request with the `standardwebhooks` reference library (never with BookingBridge's code)
and answers from a script of status codes.

Shared between features: add functions, do not change other features' ones.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

# Retries within seconds, the delivery queue polled often, a failed message back after 1 s.
WEBHOOK_SETTINGS = {
    "BB_WEBHOOK_RETRY_BASE_SECONDS": "1",
    "BB_WEBHOOK_RETRY_MAX_SECONDS": "2",
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.100",
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01",
}


@dataclass
class Received:
    at: float  # time.time() when it arrived
    headers: dict[str, str]
    body: bytes
    verified_with: list[str]  # which of the receiver's secrets verified it (by label)
    status: int  # what the receiver answered

    @property
    def id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class Receiver:
    """Thread-safe record of requests; `secrets` label -> whsec_ secret to verify with; `script`
    the statuses to answer, in order (then `default`)."""

    secrets: dict[str, str] = field(default_factory=dict)
    script: list[int] = field(default_factory=list)
    default: int = 200
    received: list[Received] = field(default_factory=list)
    port: int = 0
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    def verify(self, headers: dict[str, str], body: bytes) -> list[str]:
        ok = []
        for label, secret in dict(self.secrets).items():
            try:
                Webhook(secret).verify(body, headers)
                ok.append(label)
            except WebhookVerificationError:
                pass
        return ok

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    status = receiver.script.pop(0) if receiver.script else receiver.default
                verified = receiver.verify(headers, body)
                with receiver._lock:
                    receiver.received.append(Received(time.time(), headers, body, verified, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def receiving(receiver: Receiver) -> Iterator[Receiver]:
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
