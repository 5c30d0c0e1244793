"""Chainlink price feeds: `decimals()` and `latestRoundData()` on each asset's aggregator, by `eth_call`.

The two functions are Chainlink's AggregatorV3Interface (the local stack's MockV3Aggregator has the same
ones); their answers are one-word values, decoded by `shared.chain.abi`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from shared.assets import Asset
from shared.chain.abi import AbiMismatch, decode_words, selector
from shared.chain.rpc import JsonRpc
from shared.errors import ChainUnavailable
from shared.pricing.quotes import CHAINLINK, Quote

_DECIMALS = selector("decimals()")
_LATEST_ROUND_DATA = selector("latestRoundData()")
# roundId, answer, startedAt, updatedAt, answeredInRound
_ROUND_TYPES = ["uint80", "int256", "uint256", "uint256", "uint80"]


class ChainlinkReader:
    """Reads the latest round of AggregatorV3Interface feeds."""

    def __init__(self, rpc_url: str, timeout_seconds: float = 10.0) -> None:
        self.rpc = JsonRpc(rpc_url, timeout_seconds)
        self._decimals: dict[str, int] = {}

    def _call(self, address: str, function: str, types: list[str]) -> list:
        data = self.rpc.call("eth_call", [{"to": address, "data": "0x" + function}, "latest"])
        try:
            return decode_words(data, types)
        except AbiMismatch as exc:
            # An address with no feed answers "0x"; a wrong contract answers something else.
            raise ChainUnavailable(f"{address} did not answer as a Chainlink feed: {exc}") from exc

    def _feed_decimals(self, address: str) -> int:
        # A feed's decimals never change; read them once per instance.
        if address not in self._decimals:
            [self._decimals[address]] = self._call(address, _DECIMALS, ["uint8"])
        return self._decimals[address]

    def latest(self, asset: Asset) -> Quote:
        """The feed's latest round as a quote; raise ChainUnavailable when the node cannot answer."""
        address = asset.chainlink_aggregator
        decimals = self._feed_decimals(address)
        round_id, answer, _started_at, updated_at, _answered_in = self._call(address, _LATEST_ROUND_DATA, _ROUND_TYPES)
        if answer <= 0:
            return Quote(CHAINLINK, None, None, round_id=round_id, error=f"non-positive answer {answer}")
        if updated_at == 0:
            return Quote(CHAINLINK, None, None, round_id=round_id, error="round not complete (updatedAt = 0)")
        try:
            updated = datetime.fromtimestamp(updated_at, UTC)
        except (OverflowError, ValueError, OSError):
            return Quote(CHAINLINK, None, None, round_id=round_id, error=f"updatedAt {updated_at} is no time")
        return Quote(CHAINLINK, Decimal(answer).scaleb(-decimals), updated, round_id=round_id)
