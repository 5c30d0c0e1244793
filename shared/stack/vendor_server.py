"""The part every local vendor server shares: JSON replies, recorded requests, injected failures.

A test or the demo steers a server through `/_control/…`:
    POST /_control/failures  {"status": 500, "count": 2, "matching": "a@b.c"}
                             the next `count` API calls (whose body contains `matching`, if given)
                             answer `status`
    GET  /_control/messages                               every accepted message, oldest first
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import requests


class VendorState:
    """What one server remembers."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # (status, text the request body must contain, or None for any request)
        self.failures: list[tuple[int, str | None]] = []
        self.messages: list[dict] = []

    def next_failure(self, body: bytes) -> int | None:
        """The status to fail this request with, if an injected failure applies to it."""
        text = body.decode(errors="replace")
        with self.lock:
            for index, (status, matching) in enumerate(self.failures):
                if matching is None or matching in text:
                    del self.failures[index]
                    return status
        return None

    def record(self, message: dict) -> None:
        with self.lock:
            self.messages.append(message)


class VendorHandler(BaseHTTPRequestHandler):
    """Routes `/_control/…` here and everything else to `api_post`."""

    state: VendorState

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def reply(self, status: int, document: dict | list | None = None, headers: dict[str, str] | None = None) -> None:
        data = b"" if document is None else json.dumps(document).encode()
        self.send_response(status)
        if document is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if urlsplit(self.path).path == "/_control/messages":
            with self.state.lock:
                return self.reply(200, list(self.state.messages))
        self.reply(404, {"errors": [{"message": "not found"}]})

    def do_POST(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/_control/failures":
            order = json.loads(self.body() or b"{}")
            with self.state.lock:
                self.state.failures.extend([(int(order["status"]), order.get("matching"))] * int(order["count"]))
            return self.reply(204)
        self.api_post(path)

    def api_post(self, path: str) -> None:
        raise NotImplementedError


def make_server(handler: type[VendorHandler], port: int) -> ThreadingHTTPServer:
    """A server with fresh state on loopback `port` (call serve_forever to run it)."""
    return ThreadingHTTPServer(("127.0.0.1", port), type("Handler", (handler,), {"state": VendorState()}))


def deliver_callback(url: str, body: bytes, headers: dict[str, str], attempts: int = 20) -> None:
    """POST a callback the way the vendors do: again, after a pause, until it is answered 2xx."""
    for _ in range(attempts):
        try:
            if requests.post(url, data=body, headers=headers, timeout=10).ok:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)


class VendorControl:
    """Steers a running local vendor server."""

    def __init__(self, root: str) -> None:
        self.root = root.rstrip("/")

    def fail_next(self, status: int, count: int, matching: str | None = None) -> None:
        """Answer the next `count` calls (those whose body contains `matching`) with `status`."""
        requests.post(f"{self.root}/_control/failures", json={"status": status, "count": count,
                                                              "matching": matching}, timeout=5).raise_for_status()

    def messages(self) -> list[dict]:
        return requests.get(f"{self.root}/_control/messages", timeout=5).json()
