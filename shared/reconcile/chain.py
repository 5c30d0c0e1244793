"""The escrow contract's own view of its escrows, read with batched JSON-RPC `eth_call`s at one block.

`deals(uint256)` is the contract's public getter; one HTTP request carries a whole batch of calls, so a
sweep of thousands of escrows costs a handful of round trips.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.addresses import checksum_address
from shared.chain.abi import selector
from shared.chain.rpc import JsonRpc

# The contract's State enum, in order, as settle names the states (None: no such escrow).
CHAIN_STATES = (None, "created", "approved", "completed", "refunded")
CALLS_PER_REQUEST = 500
RPC_TIMEOUT_SECONDS = 30.0
_DEALS = selector("deals(uint256)")
_NEXT_ESCROW_ID = selector("nextEscrowId()")


@dataclass(frozen=True)
class ChainEscrow:
    """One escrow as the contract holds it."""

    escrow_id: int
    depositor: str
    amount: int
    state: str | None


class ContractView:
    """Reads the escrow contract at `rpc_url`."""

    def __init__(self, rpc_url: str, contract: str) -> None:
        self.rpc = JsonRpc(rpc_url, RPC_TIMEOUT_SECONDS)
        self.contract = contract

    def next_escrow_id(self, block: int) -> int:
        """The id the next escrow will get, at `block`."""
        [result] = self._calls([_NEXT_ESCROW_ID], block)
        return int(result, 16) if result not in ("0x", "") else 0  # not deployed yet at that block

    def creation_block(self, escrow_id: int, low: int, high: int) -> int:
        """The block that created `escrow_id`, known to lie in [low, high]: ids are handed out in order,
        so a binary search on `nextEscrowId()` over those blocks finds it in about log2(high - low) calls."""
        while low < high:
            middle = (low + high) // 2
            if self.next_escrow_id(middle) > escrow_id:
                high = middle
            else:
                low = middle + 1
        return low

    def escrows(self, escrow_ids: list[int], block: int) -> dict[int, ChainEscrow]:
        """The escrows with these ids at `block` (state None for an id the contract never gave out)."""
        found = {}
        for start in range(0, len(escrow_ids), CALLS_PER_REQUEST):
            chunk = escrow_ids[start:start + CALLS_PER_REQUEST]
            results = self._calls([_DEALS + f"{escrow_id:064x}" for escrow_id in chunk], block)
            for escrow_id, result in zip(chunk, results, strict=True):
                words = [result[2 + i * 64: 2 + (i + 1) * 64] for i in range(7)]
                found[escrow_id] = ChainEscrow(
                    escrow_id=escrow_id, depositor=checksum_address("0x" + words[0][24:]),
                    amount=int(words[3], 16), state=CHAIN_STATES[int(words[6], 16)])
        return found

    def _calls(self, calldata: list[str], block: int) -> list[str]:
        return self.rpc.batch([("eth_call", [{"to": self.contract, "data": "0x" + data}, hex(block)])
                               for data in calldata])
