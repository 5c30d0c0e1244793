"""A webhook receiver of a test's own: records every request and answers with the statuses it is told."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.support.relay import free_port


class WebhookReceiver:
    """http://<host>:<port>/hook; `answers` are used in order, then 200 for ever."""

    def __init__(self, answers: list[int] | None = None, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.received: list[dict] = []
        self.answers = list(answers or [])
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format, *args):  # noqa: A002
                pass

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.received.append({"headers": {k.lower(): v for k, v in self.headers.items()},
                                              "body": body})
                    status = receiver.answers.pop(0) if receiver.answers else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.host = host
        self.port = port or free_port()
        self.server = ThreadingHTTPServer((host, self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def close(self) -> None:
        """Stop serving and release the port: later calls are refused at once, not left hanging."""
        self.server.shutdown()
        self.server.server_close()
