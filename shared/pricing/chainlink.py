"""Chainlink price feeds: `latestRoundData` on each asset's aggregator, through web3."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from web3 import Web3
from web3.exceptions import Web3Exception

from shared.assets import Asset
from shared.chain.client import load_artifact
from shared.errors import ChainUnavailable
from shared.pricing.quotes import CHAINLINK, Quote


class ChainlinkReader:
    """Reads the latest round of AggregatorV3Interface feeds."""

    def __init__(self, rpc_url: str, timeout_seconds: float = 10.0) -> None:
        self.w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout_seconds}))
        self._feeds: dict[str, tuple] = {}

    def _feed(self, address: str):
        if address not in self._feeds:
            # The mock's ABI is Chainlink's AggregatorV2V3Interface: the same decimals() and
            # latestRoundData() as a production feed.
            feed = self.w3.eth.contract(address=Web3.to_checksum_address(address),
                                        abi=load_artifact("MockV3Aggregator")["abi"])
            # A feed's decimals never change; read them once per instance.
            self._feeds[address] = (feed, feed.functions.decimals().call())
        return self._feeds[address]

    def latest(self, asset: Asset) -> Quote:
        """The feed's latest round as a quote; raise ChainUnavailable when the node cannot answer."""
        try:
            feed, decimals = self._feed(asset.chainlink_aggregator)
            round_id, answer, _started_at, updated_at, _answered_in = feed.functions.latestRoundData().call()
        except (Web3Exception, OSError, ValueError) as exc:
            raise ChainUnavailable(f"latestRoundData on {asset.chainlink_aggregator} failed: {exc}") from exc
        if answer <= 0:
            return Quote(CHAINLINK, None, None, round_id=round_id, error=f"non-positive answer {answer}")
        if updated_at == 0:
            return Quote(CHAINLINK, None, None, round_id=round_id, error="round not complete (updatedAt = 0)")
        return Quote(CHAINLINK, Decimal(answer).scaleb(-decimals), datetime.fromtimestamp(updated_at, UTC),
                     round_id=round_id)
