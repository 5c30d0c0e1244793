"""CoinGecko's `/simple/price` over HTTP, with Retry-After honoured on 429 and backoff on 5xx.

Base URL and API key come from the settings: the Pro API in production, the local server (speaking the
same documented API) in the stack and the tests.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import requests

from shared.assets import Asset
from shared.errors import ConfigurationError, PriceSourceUnavailable
from shared.pricing.quotes import COINGECKO, Quote
from shared.pricing.settings import PriceSettings

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-cg-pro-api-key"
FIRST_BACKOFF_SECONDS = 0.5


class CoinGeckoClient:
    """Fetches USD prices for configured assets in one request."""

    def __init__(self, settings: PriceSettings, session: requests.Session | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings = settings
        self.session = session or requests.Session()
        self.session.headers.update({API_KEY_HEADER: settings.coingecko_api_key, "accept": "application/json"})
        self.sleep = sleep

    def fetch(self, assets: Sequence[Asset]) -> dict[str, Quote]:
        """symbol -> quote; raise PriceSourceUnavailable when every attempt failed transiently."""
        params = {
            "ids": ",".join(sorted({asset.coingecko_id for asset in assets})),
            "vs_currencies": "usd",
            "include_last_updated_at": "true",
            "precision": "full",
        }
        document = self._get_with_retries("/simple/price", params)
        return {asset.symbol: _quote(asset, document) for asset in assets}

    def _get_with_retries(self, path: str, params: dict[str, str]) -> dict:
        url = self.settings.coingecko_base_url + path
        backoff = FIRST_BACKOFF_SECONDS
        waited = 0.0
        failure = ""
        for attempt in range(1, self.settings.coingecko_max_attempts + 1):
            try:
                reply = self.session.get(url, params=params, timeout=self.settings.coingecko_timeout_seconds)
            except requests.RequestException as exc:
                failure, wait = f"request failed: {exc}", backoff
            else:
                if reply.status_code == 200:
                    # Prices as exact decimals: parsing them as floats would round them first.
                    return json.loads(reply.text, parse_float=Decimal)
                if reply.status_code in (401, 403):
                    raise ConfigurationError(f"CoinGecko refused the API key ({reply.status_code})")
                if reply.status_code != 429 and reply.status_code < 500:
                    raise PriceSourceUnavailable(f"CoinGecko answered {reply.status_code}: {reply.text[:200]}")
                failure = f"CoinGecko answered {reply.status_code}"
                asked = _retry_after(reply) if reply.status_code == 429 else None
                wait = backoff if asked is None else asked
            if attempt == self.settings.coingecko_max_attempts:
                break
            if waited + wait > self.settings.coingecko_max_retry_wait_seconds:
                failure += f"; the next wait ({wait:.1f}s) would exceed the retry budget"
                break
            log.warning("CoinGecko request failed; retrying",
                        extra={"attempt": attempt, "wait_seconds": wait, "failure": failure})
            self.sleep(wait)
            waited += wait
            backoff *= 2
        raise PriceSourceUnavailable(f"{failure} (after {attempt} attempts)")


def _retry_after(reply: requests.Response) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds form), if it has one."""
    value = reply.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def _quote(asset: Asset, document: dict) -> Quote:
    entry = document.get(asset.coingecko_id)
    if not isinstance(entry, dict):
        return Quote(COINGECKO, None, None, error=f"no entry for {asset.coingecko_id}")
    price = entry.get("usd")
    if not isinstance(price, Decimal | int) or price <= 0:
        return Quote(COINGECKO, None, None, error=f"no positive usd price for {asset.coingecko_id}")
    updated = entry.get("last_updated_at")
    updated_at = datetime.fromtimestamp(int(updated), UTC) if isinstance(updated, int | Decimal) else None
    if updated_at is None:
        return Quote(COINGECKO, None, None, error="answer lacks last_updated_at")
    return Quote(COINGECKO, Decimal(price), updated_at)
