"""Ethereum JSON-RPC over one HTTP session: single calls and batches, provider failures mapped once.

The platform's chain reads are a handful of methods (`eth_blockNumber`, `eth_getBlockByNumber`,
`eth_getLogs`, `eth_call`) whose answers are hex strings; a plain client on `requests` serves them
without web3.py, which cost relay and fetch-price most of their import time (web3 pulls in
eth_account, eth_keyfile and aiohttp, none of which a reader uses).
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import requests

from shared.errors import ChainUnavailable

# A JSON-RPC call slower than this is treated as a provider failure; the tick is retried.
RPC_TIMEOUT_SECONDS = 10.0


class RpcError(ChainUnavailable):
    """The node answered a call with a JSON-RPC error object (`code`, `message`)."""

    def __init__(self, method: str, error: Any) -> None:
        error = error if isinstance(error, dict) else {"message": str(error)}
        self.code = error.get("code")
        self.message = str(error.get("message") or "")
        super().__init__(f"{method} refused: {self.code} {self.message[:300]}")


class JsonRpc:
    """A JSON-RPC 2.0 client for one node URL (one keep-alive session per instance)."""

    def __init__(self, url: str, timeout: float = RPC_TIMEOUT_SECONDS) -> None:
        self.url = url
        self.timeout = timeout
        self.session = requests.Session()
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
            reply = self.session.post(self.url, data=json.dumps(payload), timeout=self.timeout,
                                      headers={"Content-Type": "application/json"})
            reply.raise_for_status()
            answers = reply.json()
        except (requests.RequestException, ValueError) as exc:
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


def hex_int(value: Any, what: str) -> int:
    """A JSON-RPC quantity (0x-hex) as an int; ChainUnavailable for anything else (a broken node)."""
    if isinstance(value, str) and value.startswith("0x"):
        try:
            return int(value, 16)
        except ValueError:
            pass
    raise ChainUnavailable(f"the node answered {what} with {str(value)[:80]!r}, not a hex quantity")
