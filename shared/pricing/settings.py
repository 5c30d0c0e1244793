"""fetch-price's settings: where prices come from and how they are guarded."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from shared.assets import Asset
from shared.settings import EnvReader

# A price fetched this recently is not fetched again.
DEFAULT_PRICE_CACHE_TTL_SECONDS = 30.0
# Sources further apart than this (relative to the lower one) make the price suspect.
DEFAULT_PRICE_MAX_SOURCE_SPREAD = Decimal("0.02")
# A move beyond this from the last good price, in one round, is held until the next round confirms it.
DEFAULT_PRICE_MAX_JUMP = Decimal("0.5")
DEFAULT_COINGECKO_TIMEOUT_SECONDS = 10.0
DEFAULT_COINGECKO_MAX_ATTEMPTS = 3
DEFAULT_COINGECKO_MAX_RETRY_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class PriceSettings:
    """What `fetch-price` reads prices from and how it guards them."""

    assets: tuple[Asset, ...]
    rpc_url: str
    coingecko_base_url: str
    coingecko_api_key: str
    cache_ttl_seconds: float
    max_source_spread: Decimal
    max_jump: Decimal
    coingecko_timeout_seconds: float
    coingecko_max_attempts: int
    coingecko_max_retry_wait_seconds: float

    @classmethod
    def read(cls, reader: EnvReader) -> PriceSettings:
        """Read the price variables, recording what is missing."""
        return cls(
            assets=reader.assets(),
            rpc_url=reader.required("ETH_RPC_URL"),
            coingecko_base_url=reader.required("COINGECKO_BASE_URL").rstrip("/"),
            coingecko_api_key=reader.required("COINGECKO_API_KEY"),
            cache_ttl_seconds=reader.number("PRICE_CACHE_TTL_SECONDS", DEFAULT_PRICE_CACHE_TTL_SECONDS),
            max_source_spread=reader.decimal("PRICE_MAX_SOURCE_SPREAD", DEFAULT_PRICE_MAX_SOURCE_SPREAD),
            max_jump=reader.decimal("PRICE_MAX_JUMP", DEFAULT_PRICE_MAX_JUMP),
            coingecko_timeout_seconds=reader.number("COINGECKO_TIMEOUT_SECONDS", DEFAULT_COINGECKO_TIMEOUT_SECONDS),
            coingecko_max_attempts=reader.integer(
                "COINGECKO_MAX_ATTEMPTS", reader.optional("COINGECKO_MAX_ATTEMPTS"), DEFAULT_COINGECKO_MAX_ATTEMPTS
            ),
            coingecko_max_retry_wait_seconds=reader.number(
                "COINGECKO_MAX_RETRY_WAIT_SECONDS", DEFAULT_COINGECKO_MAX_RETRY_WAIT_SECONDS
            ),
        )
