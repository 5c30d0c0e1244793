"""fetch-price: on each `prices.tick`, fetch CoinGecko and Chainlink, guard, store, publish what moved."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.pricing.service import PriceService
from shared.pricing.settings import PriceSettings
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[PriceSettings])
SERVICE = PriceService(SETTINGS)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def fetch_price(cloud_event) -> None:
    """The tick's content is irrelevant; a source that keeps failing raises so the tick is redelivered."""
    SERVICE.run_tick()
