"""A local server speaking CoinGecko's documented `/api/v3/simple/price`, steerable by tests and the demo.

    GET  /api/v3/simple/price?ids=…&vs_currencies=usd&include_last_updated_at=true
         needs an `x-cg-pro-api-key` (or `x-cg-demo-api-key`) header, as the real API does;
         answers {"<id>": {"usd": <number>, "last_updated_at": <unix seconds>}}, omitting unknown ids.
    PUT  /_control/prices    {"<id>": {"usd": "<decimal>", "last_updated_at": <unix seconds, optional>}}
    POST /_control/failures  {"status": 429 | 5xx, "count": N, "retry_after": seconds (optional)}
    GET  /_control/requests  every price request seen: time, query and the status answered
    Run: python -m shared.stack.coingecko_server --port N
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

PRICE_PATH = "/api/v3/simple/price"
API_KEY_HEADERS = ("x-cg-pro-api-key", "x-cg-demo-api-key")


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # id -> (usd as decimal text, last_updated_at or None for "now")
        self.prices: dict[str, tuple[str, int | None]] = {}
        self.failures: list[tuple[int, float | None]] = []
        self.requests: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass

    def _reply(self, status: int, body: str, headers: dict[str, str] | None = None) -> None:
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        url = urlsplit(self.path)
        if url.path == "/_control/requests":
            with self.state.lock:
                return self._reply(200, json.dumps(self.state.requests))
        if url.path != PRICE_PATH:
            return self._reply(404, json.dumps({"error": "Not Found"}))
        status, body, headers = self._price_answer(parse_qs(url.query))
        with self.state.lock:
            self.state.requests.append({"at": time.time(), "query": url.query, "status": status})
        self._reply(status, body, headers)

    def _price_answer(self, query: dict) -> tuple[int, str, dict]:
        if not any(self.headers.get(name) for name in API_KEY_HEADERS):
            return 401, json.dumps({"status": {"error_code": 10002, "error_message": "API Key Missing"}}), {}
        with self.state.lock:
            failure = self.state.failures.pop(0) if self.state.failures else None
            prices = dict(self.state.prices)
        if failure:
            status, retry_after = failure
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
            message = "You've exceeded the Rate Limit." if status == 429 else "Internal Server Error"
            return status, json.dumps({"status": {"error_code": status, "error_message": message}}), headers
        ids = [i for i in (query.get("ids") or [""])[0].split(",") if i]
        if not ids or "usd" not in (query.get("vs_currencies") or [""])[0].split(","):
            return 400, json.dumps({"error": "missing ids or vs_currencies"}), {}
        with_time = (query.get("include_last_updated_at") or ["false"])[0] == "true"
        entries = []
        for coin in ids:
            if coin in prices:
                usd, updated = prices[coin]
                # The decimal text goes out as a JSON number, digit for digit.
                fields = [f'"usd":{usd}']
                if with_time:
                    fields.append(f'"last_updated_at":{updated if updated is not None else int(time.time())}')
                entries.append(f'{json.dumps(coin)}:{{{",".join(fields)}}}')
        return 200, "{" + ",".join(entries) + "}", {}

    def do_PUT(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/_control/prices":
            return self._reply(404, "{}")
        body = self._body()
        with self.state.lock:
            for coin, entry in body.items():
                self.state.prices[coin] = (str(entry["usd"]), entry.get("last_updated_at"))
        self._reply(204, "")

    def do_POST(self) -> None:  # noqa: N802
        if urlsplit(self.path).path != "/_control/failures":
            return self._reply(404, "{}")
        body = self._body()
        with self.state.lock:
            self.state.failures.extend([(int(body["status"]), body.get("retry_after"))] * int(body["count"]))
        self._reply(204, "")


def make_server(port: int) -> ThreadingHTTPServer:
    """A server with its own state, bound to `port` on loopback (call serve_forever to run it)."""
    handler = type("Handler", (_Handler,), {"state": _State()})
    return ThreadingHTTPServer(("127.0.0.1", port), handler)


class CoinGeckoControl:
    """Steers a running local CoinGecko server (tests and the demo)."""

    def __init__(self, base_url: str) -> None:
        self.root = base_url.removesuffix("/api/v3")

    def set_price(self, coin: str, usd: str, last_updated_at: int | None = None) -> None:
        """Quote `coin` at `usd` (decimal text); updated now unless `last_updated_at` is given."""
        reply = requests.put(f"{self.root}/_control/prices",
                             json={coin: {"usd": usd, "last_updated_at": last_updated_at}}, timeout=5)
        reply.raise_for_status()

    def fail_next(self, status: int, count: int, retry_after: float | None = None) -> None:
        """Answer the next `count` price requests with `status` (and Retry-After, if given)."""
        reply = requests.post(f"{self.root}/_control/failures",
                              json={"status": status, "count": count, "retry_after": retry_after}, timeout=5)
        reply.raise_for_status()

    def requests_seen(self) -> list[dict]:
        """Every price request the server answered, oldest first."""
        return requests.get(f"{self.root}/_control/requests", timeout=5).json()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    make_server(parser.parse_args().port).serve_forever()
