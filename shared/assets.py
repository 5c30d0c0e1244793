"""The collateral assets the platform prices and assesses, configured by `PRICE_ASSETS` (JSON).

    [{"symbol": "ETH", "token": "0x0000000000000000000000000000000000000000", "decimals": 18,
      "coingecko_id": "ethereum", "chainlink_aggregator": "0x…", "heartbeat_seconds": 3600,
      "deviation_threshold": "0.005", "liquidation_threshold": "0.825"}]

`token` is the escrow's `asset` field (address(0) is native ETH). The heartbeat is both the age beyond
which a source's quote is stale and the longest time between two published prices; the deviation
threshold is the relative move that publishes before the heartbeat (Chainlink's feed parameters). The
liquidation threshold is Aave's: the share of the collateral's value that may back an obligation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from shared.addresses import checksum_address
from shared.errors import ConfigurationError

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class Asset:
    """One configured collateral asset."""

    symbol: str
    token: str
    decimals: int
    coingecko_id: str
    chainlink_aggregator: str
    heartbeat_seconds: int
    deviation_threshold: Decimal
    liquidation_threshold: Decimal


def parse_assets(text: str) -> tuple[Asset, ...]:
    """Parse and validate the `PRICE_ASSETS` document; raise ConfigurationError naming every problem."""
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"PRICE_ASSETS is not JSON: {exc}") from exc
    if not isinstance(document, list) or not document:
        raise ConfigurationError("PRICE_ASSETS must be a non-empty JSON list of assets")
    problems: list[str] = []
    parsed = [_parse_one(index, item, problems) for index, item in enumerate(document)]
    assets = [asset for asset in parsed if asset is not None]
    for field in ("symbol", "token"):
        values = [getattr(asset, field) for asset in assets]
        if len(values) != len(set(values)):
            problems.append(f"two assets share a {field}")
    if problems:
        raise ConfigurationError("PRICE_ASSETS: " + "; ".join(problems))
    return tuple(assets)


def _parse_one(index: int, item: Any, problems: list[str]) -> Asset | None:
    where = f"asset {index}"
    if not isinstance(item, dict):
        problems.append(f"{where} is not an object")
        return None

    def text(name: str) -> str:
        value = item.get(name)
        if not isinstance(value, str) or not value:
            problems.append(f"{where}.{name} must be a non-empty string")
            return ""
        return value

    def address(name: str) -> str:
        value = text(name)
        if value and not _ADDRESS.match(value):
            problems.append(f"{where}.{name} is not an address")
            return ""
        return checksum_address(value) if value else ""

    def positive_int(name: str) -> int:
        value = item.get(name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            problems.append(f"{where}.{name} must be a positive integer")
            return 0
        return value

    def fraction(name: str) -> Decimal:
        # Decimal strings only: a JSON float would already have lost exactness.
        value = item.get(name)
        try:
            number = Decimal(value) if isinstance(value, str) else None
        except InvalidOperation:
            number = None
        if number is None or not (0 < number <= 1):
            problems.append(f"{where}.{name} must be a decimal string in (0, 1]")
            return Decimal(0)
        return number

    return Asset(
        symbol=text("symbol"),
        token=address("token"),
        decimals=positive_int("decimals"),
        coingecko_id=text("coingecko_id"),
        chainlink_aggregator=address("chainlink_aggregator"),
        heartbeat_seconds=positive_int("heartbeat_seconds"),
        deviation_threshold=fraction("deviation_threshold"),
        liquidation_threshold=fraction("liquidation_threshold"),
    )


def assets_to_json(assets: list[dict[str, Any]]) -> str:
    """Serialise asset documents for the environment (used by the local stack)."""
    return json.dumps(assets, separators=(",", ":"))
