"""A JSON-RPC proxy in front of anvil that refuses wide eth_getLogs ranges, as hosted providers do, and can
leave chosen transactions' logs out of its answers, as a faulty provider would.

anvil itself has no such limit; this proxy makes the provider error real, with the JSON-RPC error
shape and code (-32005, "query returned more than 10000 results") that hosted providers return.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LimitingRpcProxy:
    """Forwards JSON-RPC to `upstream`; eth_getLogs spanning more than `max_blocks` is refused."""

    def __init__(self, upstream: str, max_blocks: int) -> None:
        self.upstream = upstream
        self.max_blocks = max_blocks
        self.refused = 0
        # Transaction hashes whose logs eth_getLogs answers leave out, silently.
        self.omit_transactions: set[str] = set()
        self.served_ranges: list[tuple[int, int]] = []
        # The next eth_getLogs starting at or after this block is refused, whatever its width, once: a
        # provider whose result limit a dense stretch of blocks exceeds.
        self.refuse_once_from_block: int | None = None
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                reply = proxy.handle(request)
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def handle(self, request: dict) -> dict:
        """Refuse or forward one JSON-RPC request."""
        if request.get("method") == "eth_getLogs":
            query = request["params"][0]
            start, end = int(query["fromBlock"], 16), int(query["toBlock"], 16)
            dense = self.refuse_once_from_block is not None and start >= self.refuse_once_from_block
            if dense:
                self.refuse_once_from_block = None
            if dense or end - start + 1 > self.max_blocks:
                self.refused += 1
                return {"jsonrpc": "2.0", "id": request.get("id"),
                        "error": {"code": -32005, "message": "query returned more than 10000 results"}}
            self.served_ranges.append((start, end))
        forwarded = urllib.request.Request(self.upstream, data=json.dumps(request).encode(),
                                           headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(forwarded, timeout=30) as response:
            reply = json.loads(response.read())
        if request.get("method") == "eth_getLogs" and isinstance(reply.get("result"), list):
            reply["result"] = [entry for entry in reply["result"]
                               if entry.get("transactionHash", "").lower() not in self.omit_transactions]
        return reply

    def __enter__(self) -> LimitingRpcProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
