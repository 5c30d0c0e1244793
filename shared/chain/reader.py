"""The four chain reads relay needs, behind one small adapter, with provider errors mapped once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.addresses import canonical_address
from shared.chain.escrow_logs import escrow_events, log_payload, quantity, to_hex
from shared.chain.rpc import JsonRpc, RpcError, hex_int
from shared.errors import ChainUnavailable, RangeTooLarge

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
    if isinstance(exc, RpcError):
        return {"code": exc.code, "message": exc.message}
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
    """Reads the escrow contract's chain: head, block hashes and times, decoded logs (plain JSON-RPC)."""

    def __init__(self, rpc: JsonRpc, contract_address: str, chain_id: int) -> None:
        self.rpc = rpc
        self.chain_id = chain_id
        self.contract = canonical_address(contract_address)
        self._events = escrow_events()

    def head(self) -> int:
        """The newest block number."""
        return hex_int(self.rpc.call("eth_blockNumber", []), "eth_blockNumber")

    def _block(self, number: int) -> dict[str, Any]:
        block = self.rpc.call("eth_getBlockByNumber", [hex(number), False])
        if not isinstance(block, dict):
            raise ChainUnavailable(f"the node has no block {number}")
        return block

    def block_hash(self, number: int) -> str:
        """The hash of block `number` on the current canonical chain."""
        return to_hex(self._block(number)["hash"])

    def block_timestamp(self, number: int) -> int:
        """The timestamp (seconds) of block `number`."""
        return hex_int(self._block(number).get("timestamp"), f"block {number}'s timestamp")

    def logs(self, start: int, end: int) -> list[DecodedLog]:
        """The escrow logs of blocks start..end, in chain order; RangeTooLarge if the provider refuses.

        A log of the contract that does not fit its event's layout means a broken provider (or a
        contract this code does not know): ChainUnavailable, so the tick is retried and the error is loud.
        """
        query = {"address": self.contract, "fromBlock": hex(start), "toBlock": hex(end)}
        try:
            raw_logs = self.rpc.call("eth_getLogs", [query])
        except RpcError as exc:
            if is_range_error(exc):
                raise RangeTooLarge(f"eth_getLogs {start}..{end} refused: {exc}") from exc
            raise
        if not isinstance(raw_logs, list):
            raise ChainUnavailable(f"eth_getLogs {start}..{end}: the node answered {str(raw_logs)[:80]!r}")
        decoded = []
        try:
            ordered = sorted(raw_logs, key=lambda raw: (quantity(raw["blockNumber"]), quantity(raw["logIndex"])))
            for raw in ordered:
                known = self._events.get(raw["topics"][0].lower()) if raw["topics"] else None
                if known is None:
                    continue  # an event relay does not forward
                layout, event_type, build = known
                stamp = raw.get("blockTimestamp")
                decoded.append(DecodedLog(
                    event_type,
                    log_payload(self.chain_id, raw, layout, build),
                    quantity(stamp) if stamp is not None else None,
                ))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ChainUnavailable(f"eth_getLogs {start}..{end}: a log that does not fit the escrow ABI: "
                                   f"{exc!r}") from exc
        return decoded
