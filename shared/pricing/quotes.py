"""A quote from one price source, as fetched; the guards decide what it is worth."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

COINGECKO = "coingecko"
CHAINLINK = "chainlink"
PRICE_SOURCES = (COINGECKO, CHAINLINK)


@dataclass(frozen=True)
class Quote:
    """One source's price for one asset, with the time the source says it was last updated."""

    source: str
    price: Decimal | None
    updated_at: datetime | None
    # Chainlink's round id; None for CoinGecko.
    round_id: int | None = None
    # Why the source gave no usable price (missing from the answer, non-positive answer).
    error: str | None = None
