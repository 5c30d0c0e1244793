"""settle: apply escrow contract events to the escrow records, and compliance decisions to their holds."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.settings import Settings
from shared.settlement.service import settle_consumer

configure_logging()
SETTINGS = Settings.from_env()
CONSUMER = settle_consumer(SETTINGS)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def settle(cloud_event) -> None:
    """Apply one event exactly once, then publish the resulting state changes."""
    CONSUMER.handle(cloud_event)
