"""The JSON-RPC client (shared/chain/rpc.py) against a local HTTP server that misbehaves as nodes do: each
bad answer is one ChainUnavailable (the tick is retried), never a hang or a wrong result, and the client
serves the next call."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shared.chain.rpc import JsonRpc, RpcError
from shared.errors import ChainUnavailable

SLOW_SECONDS = 2.0


class _Node(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as nodes and their load balancers speak
    seen: list[dict] = []

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        calls = body if isinstance(body, list) else [body]
        _Node.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"),
                           "connection": self.client_address[1], "method": calls[0]["method"]})
        behaviour = self.path.split("?")[0].strip("/")
        if calls[0]["method"] == "slow_method":
            time.sleep(SLOW_SECONDS)
        answers = [{"jsonrpc": "2.0", "id": c["id"], "result": hex(len(c["params"]))} for c in calls]
        status, payload = 200, json.dumps(answers if isinstance(body, list) else answers[0]).encode()
        if behaviour == "status500":
            status, payload = 500, b"upstream error"
        elif behaviour == "garbage":
            payload = b"<html>not json</html>"
        elif behaviour == "left-out":
            payload = json.dumps([]).encode()
        elif behaviour == "refused":
            error = {"code": -32005, "message": "query returned more than 10000 results"}
            payload = json.dumps({"jsonrpc": "2.0", "id": calls[0]["id"], "error": error}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        # "idle-close": the answer says keep-alive, then the node drops the connection, as an idle timeout does.
        self.close_connection = behaviour == "idle-close"


@pytest.fixture(scope="module")
def node():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Node)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_calls_keep_one_connection_and_the_urls_path_query_and_credentials(node):
    _Node.seen.clear()
    rpc = JsonRpc(f"http://us%40er:p%3Ass@{node}/v2/key?network=main")
    assert rpc.call("eth_blockNumber", []) == "0x0"
    assert rpc.batch([("eth_call", [1]), ("eth_call", [1, 2])]) == ["0x1", "0x2"]
    assert [seen["path"] for seen in _Node.seen] == ["/v2/key?network=main"] * 2
    assert {seen["authorization"] for seen in _Node.seen} == {"Basic dXNAZXI6cDpzcw=="}  # us@er:p:ss
    assert len({seen["connection"] for seen in _Node.seen}) == 1


def test_a_connection_the_node_closed_while_idle_is_opened_again(node):
    _Node.seen.clear()
    rpc = JsonRpc(f"http://{node}/idle-close")
    assert [rpc.call("eth_blockNumber", []) for _ in range(3)] == ["0x0"] * 3
    assert len(_Node.seen) == 3 and len({seen["connection"] for seen in _Node.seen}) == 3


@pytest.mark.parametrize("path, reason", [
    ("status500", "HTTP 500"),
    ("garbage", "JSONDecodeError"),
    ("left-out", "left the call out"),
    ("refused", "more than 10000 results"),
])
def test_a_bad_answer_is_chain_unavailable_and_the_client_serves_the_next_call(node, path, reason):
    rpc = JsonRpc(f"http://{node}/{path}")
    with pytest.raises(ChainUnavailable, match=reason) as raised:
        rpc.call("eth_getLogs", [{}])
    assert isinstance(raised.value, RpcError) == (path == "refused")
    good = JsonRpc(f"http://{node}/")
    assert good.call("eth_blockNumber", []) == "0x0"


def test_a_node_slower_than_the_timeout_fails_the_call_within_it(node):
    _Node.seen.clear()
    rpc = JsonRpc(f"http://{node}/", timeout=0.3)
    assert rpc.call("eth_blockNumber", []) == "0x0"
    started = time.monotonic()
    with pytest.raises(ChainUnavailable, match="timed out"):
        rpc.call("slow_method", [])
    assert time.monotonic() - started < SLOW_SECONDS
    # Not sent again, though on a kept connection: a timeout is not a connection the node closed while idle.
    assert [seen["method"] for seen in _Node.seen] == ["eth_blockNumber", "slow_method"]
    assert rpc.call("eth_blockNumber", []) == "0x0"


def test_a_node_that_is_not_there_is_chain_unavailable():
    with pytest.raises(ChainUnavailable, match="Connection refused|ConnectionRefused"):
        JsonRpc("http://127.0.0.1:9/").call("eth_blockNumber", [])


@pytest.mark.parametrize("url", ["ftp://node/", "node:8545", "http:///path"])
def test_a_url_that_names_no_http_node_stops_startup(url):
    with pytest.raises(ValueError, match="http:// or https://"):
        JsonRpc(url)
