"""The CoinGecko client against the local server that speaks /simple/price (no stack needed)."""

import threading
from decimal import Decimal

import pytest

from shared.errors import ConfigurationError, PriceSourceUnavailable
from shared.pricing.coingecko import CoinGeckoClient
from shared.pricing.settings import PriceSettings
from shared.settings import Settings
from shared.stack.coingecko_server import CoinGeckoControl, make_server
from tests.support.relay import free_port

ASSETS = ('[{"symbol": "ETH", "token": "0x0000000000000000000000000000000000000000", "decimals": 18, '
          '"coingecko_id": "ethereum", "chainlink_aggregator": "0x1111111111111111111111111111111111111111", '
          '"heartbeat_seconds": 3600, "deviation_threshold": "0.005", "liquidation_threshold": "0.825"}]')


@pytest.fixture
def server():
    port = free_port()
    httpd = make_server(port)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/api/v3"
    httpd.shutdown()


def client(base_url, api_key="k", **env):
    settings = Settings.from_env({
        "SERVICE_NAME": "t", "GCP_PROJECT": "p", "DB_NAME": "d", "DB_USER": "u", "DB_HOST": "h", "DB_PORT": "1",
        "PRICE_ASSETS": ASSETS, "ETH_RPC_URL": "http://x", "COINGECKO_BASE_URL": base_url,
        "COINGECKO_API_KEY": api_key, **env}, parts=[PriceSettings])
    waits = []
    return CoinGeckoClient(settings.part(PriceSettings), sleep=waits.append), settings.part(PriceSettings).assets, waits


def test_prices_arrive_as_exact_decimals_with_their_update_time(server):
    CoinGeckoControl(server).set_price("ethereum", "3123.456789012345678", last_updated_at=1_790_000_000)
    gecko, assets, _ = client(server)
    quote = gecko.fetch(assets)["ETH"]
    assert quote.price == Decimal("3123.456789012345678")
    assert int(quote.updated_at.timestamp()) == 1_790_000_000


def test_retry_after_is_honoured_on_429(server):
    control = CoinGeckoControl(server)
    control.set_price("ethereum", "2000")
    control.fail_next(429, 2, retry_after=3)
    gecko, assets, waits = client(server, COINGECKO_MAX_RETRY_WAIT_SECONDS="10")
    assert gecko.fetch(assets)["ETH"].price == Decimal(2000)
    assert waits == [3.0, 3.0]


def test_server_errors_back_off_then_give_up_as_retryable(server):
    CoinGeckoControl(server).fail_next(503, 5)
    gecko, assets, waits = client(server, COINGECKO_MAX_ATTEMPTS="3")
    with pytest.raises(PriceSourceUnavailable, match="503.*after 3 attempts"):
        gecko.fetch(assets)
    assert waits == [0.5, 1.0]


def test_a_retry_after_beyond_the_budget_gives_up_at_once(server):
    CoinGeckoControl(server).fail_next(429, 1, retry_after=60)
    gecko, assets, waits = client(server, COINGECKO_MAX_RETRY_WAIT_SECONDS="10")
    with pytest.raises(PriceSourceUnavailable, match="retry budget"):
        gecko.fetch(assets)
    assert waits == []


def test_a_missing_coin_is_a_quote_without_price(server):
    gecko, assets, _ = client(server)
    quote = gecko.fetch(assets)["ETH"]
    assert quote.price is None and "ethereum" in quote.error


def test_a_refused_api_key_is_a_configuration_error(server):
    gecko, assets, _ = client(server, api_key="k")
    gecko.session.headers.pop("x-cg-pro-api-key")
    with pytest.raises(ConfigurationError, match="401"):
        gecko.fetch(assets)
