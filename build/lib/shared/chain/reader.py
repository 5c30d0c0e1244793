"""The four chain reads relay needs, behind one small adapter, with provider errors mapped once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from web3 import Web3
from web3.exceptions import Web3Exception

from shared.chain.client import escrow_contract
from shared.chain.escrow_logs import DECODERS, log_payload, to_hex
from shared.errors import ChainUnavailable, RangeTooLarge

T = TypeVar("T")

# Phrases providers use when an eth_getLogs query is too big (geth, Infura, Alchemy, QuickNode, ...).
_RANGE_ERROR_HINTS = ("more than", "too many", "range", "limit exceeded", "response size", "block range")
# JSON-RPC codes used for "limit exceeded" by common providers.
_RANGE_ERROR_CODES = (-32005, -32602)


@dataclass(frozen=True)
class DecodedLog:
    """One escrow log, decoded: its wire event type and payload."""

    event_type: str
    payload: dict[str, Any]
    # The block's timestamp when the provider includes it in the log (anvil, geth 1.14+), else None.
    block_timestamp: int | None = None


def _rpc_error_of(exc: Exception) -> dict[str, Any]:
    for arg in getattr(exc, "args", ()):
        if isinstance(arg, dict):
            return arg
    response = getattr(exc, "rpc_response", None) or {}
    error = response.get("error") if isinstance(response, dict) else None
    return error if isinstance(error, dict) else {}


def is_range_error(exc: Exception) -> bool:
    """Whether a provider error means "this eth_getLogs range is too big"."""
    error = _rpc_error_of(exc)
    message = str(error.get("message") or exc).lower()
    return error.get("code") in _RANGE_ERROR_CODES or any(hint in message for hint in _RANGE_ERROR_HINTS)


class ChainReader:
    """Reads the escrow contract's chain: head, block hashes and times, decoded logs."""

    def __init__(self, w3: Web3, contract_address: str, chain_id: int) -> None:
        self.w3 = w3
        self.chain_id = chain_id
        self.contract = escrow_contract(w3, contract_address)
        self._events = {}
        for abi_name, (event_type, build) in DECODERS.items():
            event = getattr(self.contract.events, abi_name)()
            self._events[to_hex(event.topic)] = (event, event_type, build)

    def head(self) -> int:
        """The newest block number."""
        return self._call(lambda: self.w3.eth.block_number)

    def block_hash(self, number: int) -> str:
        """The hash of block `number` on the current canonical chain."""
        return to_hex(self._call(lambda: self.w3.eth.get_block(number)["hash"]))

    def block_timestamp(self, number: int) -> int:
        """The timestamp (seconds) of block `number`."""
        return int(self._call(lambda: self.w3.eth.get_block(number)["timestamp"]))

    def logs(self, start: int, end: int) -> list[DecodedLog]:
        """The escrow logs of blocks start..end, in chain order; RangeTooLarge if the provider refuses."""
        try:
            raw_logs = self.w3.eth.get_logs(
                {"address": self.contract.address, "fromBlock": start, "toBlock": end}
            )
        except (Web3Exception, ValueError) as exc:
            if is_range_error(exc):
                raise RangeTooLarge(f"eth_getLogs {start}..{end} refused: {exc}") from exc
            raise ChainUnavailable(f"eth_getLogs {start}..{end} failed: {exc!r}") from exc
        except OSError as exc:
            raise ChainUnavailable(f"eth_getLogs {start}..{end} failed: {exc!r}") from exc
        decoded = []
        for raw in sorted(raw_logs, key=lambda log: (log["blockNumber"], log["logIndex"])):
            known = self._events.get(to_hex(raw["topics"][0])) if raw["topics"] else None
            if known is None:
                continue  # an event relay does not forward
            event, event_type, build = known
            stamp = raw.get("blockTimestamp")
            decoded.append(DecodedLog(
                event_type,
                log_payload(self.chain_id, event.process_log(raw), build),
                int(stamp, 16) if isinstance(stamp, str) else stamp if isinstance(stamp, int) else None,
            ))
        return decoded

    @staticmethod
    def _call(call: Callable[[], T]) -> T:
        try:
            return call()
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailable(f"JSON-RPC call failed: {exc!r}") from exc
