"""relay: on each `relay.tick`, relay confirmed escrow contract logs to settlement.events.v1."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.messaging.consumer import tick_data
from shared.relay.service import Relay, backfill_request
from shared.relay.settings import ChainSettings
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[ChainSettings])
RELAY = Relay(SETTINGS)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def relay(cloud_event) -> None:
    """Scan and publish; a tick from the reconciler may ask for a backfill first."""
    RELAY.run_tick(backfill_request(tick_data(cloud_event), RELAY.chain))
