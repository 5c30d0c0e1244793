"""Ethereum JSON-RPC over one keep-alive HTTP connection: single calls and batches, provider failures
mapped once.

The platform's chain reads are a handful of methods (`eth_blockNumber`, `eth_getBlockByNumber`,
`eth_getLogs`, `eth_call`) whose answers are hex strings; a plain client serves them without web3.py,
which cost relay and fetch-price most of their import time (web3 pulls in eth_account, eth_keyfile and
aiohttp, none of which a reader uses). The client is the standard library's http.client: requests (and
urllib3 under it) took 0.027 s of relay's and the reconciler's start, for one POST to one URL. What
requests did here is kept: the URL's credentials as Basic auth, its path and query, TLS with the system's
certificates, a timeout per connect and per read, and a connection the node closed while idle opened
again (every call made here is a read, so sending it again is safe).
"""

from __future__ import annotations

import base64
import itertools
import json
import threading
from http.client import HTTPConnection, HTTPException, HTTPSConnection
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import ChainUnavailable

# A JSON-RPC call slower than this is treated as a provider failure; the tick is retried.
RPC_TIMEOUT_SECONDS = 10.0
# How a keep-alive connection the node closed since its last answer shows when it is used again.
_CLOSED_WHILE_IDLE = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class RpcError(ChainUnavailable):
    """The node answered a call with a JSON-RPC error object (`code`, `message`)."""

    def __init__(self, method: str, error: Any) -> None:
        error = error if isinstance(error, dict) else {"message": str(error)}
        self.code = error.get("code")
        self.message = str(error.get("message") or "")
        super().__init__(f"{method} refused: {self.code} {self.message[:300]}")


class JsonRpc:
    """A JSON-RPC 2.0 client for one node URL (one keep-alive connection per instance, used in turns)."""

    def __init__(self, url: str, timeout: float = RPC_TIMEOUT_SECONDS) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the node's URL must be http:// or https:// with a host")
        self.url = url
        self.timeout = timeout
        self._connection_class = HTTPSConnection if parts.scheme == "https" else HTTPConnection
        self._host, self._port = parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
        self._connection: HTTPConnection | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def call(self, method: str, params: list[Any]) -> Any:
        """The result of one call; RpcError for an error answer, ChainUnavailable when the node cannot
        be reached or answers something that is not JSON-RPC."""
        [result] = self.batch([(method, params)])
        return result

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """The results of several calls sent in one HTTP request, in the order asked."""
        if not calls:
            return []
        ids = [next(self._ids) for _ in calls]
        body = [{"jsonrpc": "2.0", "id": i, "method": method, "params": params}
                for i, (method, params) in zip(ids, calls, strict=True)]
        payload: Any = body[0] if len(body) == 1 else body
        try:
            answers = json.loads(self._post(json.dumps(payload).encode()))
        except (OSError, HTTPException, ValueError) as exc:
            raise ChainUnavailable(f"JSON-RPC {calls[0][0]} to the node failed: {exc!r}") from exc
        if isinstance(answers, dict):
            answers = [answers]
        if not isinstance(answers, list):
            raise ChainUnavailable(f"JSON-RPC {calls[0][0]}: the node's answer is not JSON-RPC")
        by_id = {answer.get("id"): answer for answer in answers if isinstance(answer, dict)}
        results = []
        for i, (method, _params) in zip(ids, calls, strict=True):
            answer = by_id.get(i)
            if answer is None:
                raise ChainUnavailable(f"JSON-RPC {method}: the node's answer left the call out")
            if "error" in answer:
                raise RpcError(method, answer["error"])
            if "result" not in answer:
                raise ChainUnavailable(f"JSON-RPC {method}: an answer with neither result nor error")
            results.append(answer["result"])
        return results


    def _post(self, body: bytes) -> bytes:
        """POST `body` and return the answer's body; OSError or HTTPException when there is none, ValueError
        for an HTTP status other than 200."""
        with self._lock:
            while True:
                reused = self._connection is not None
                if self._connection is None:
                    self._connection = self._connection_class(self._host, self._port, timeout=self.timeout)
                try:
                    self._connection.request("POST", self._target, body, self._headers)
                    response = self._connection.getresponse()
                    answer = response.read()
                except (OSError, HTTPException) as exc:
                    self._connection.close()
                    self._connection = None
                    # Sent on a connection the node had closed: once more on a new one (a timeout is not retried).
                    if reused and isinstance(exc, _CLOSED_WHILE_IDLE + (HTTPException,)):
                        continue
                    raise
                if response.will_close:
                    self._connection.close()
                    self._connection = None
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status} {response.reason}: {answer[:200]!r}")
                return answer


def hex_int(value: Any, what: str) -> int:
    """A JSON-RPC quantity (0x-hex) as an int; ChainUnavailable for anything else (a broken node)."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise ChainUnavailable(f"the node answered {what} with {str(value)[:80]!r}, not a hex quantity")
