"""settle: apply escrow contract events to the escrow records, and compliance decisions to their holds."""

import functions_framework

from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.messaging.consumer import Consumer
from shared.settings import Settings
from shared.settlement.service import Settlement
from shared.settlement.tables import SCHEMA

configure_logging()
SETTINGS = Settings.from_env()
CONSUMER = Consumer("settle", SCHEMA, SETTINGS, Settlement().handle, replayable=True)


@functions_framework.cloud_event
@rides_out_database_outages
def settle(cloud_event) -> None:
    """Apply one event exactly once, then publish the resulting state changes."""
    CONSUMER.handle(cloud_event)
