"""assess-margin: apply escrow state changes and price updates to the risk projection; emit margin events."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.messaging.consumer import Consumer
from shared.risk import SCHEMA
from shared.risk.margin_events import publish_after_commit
from shared.risk.service import RiskEngine
from shared.risk.settings import RiskSettings
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[RiskSettings])
CONSUMER = Consumer("assess-margin", SCHEMA, SETTINGS, RiskEngine(SETTINGS.part(RiskSettings)).handle,
                    publish_after_commit(SETTINGS.project_id, SETTINGS.publish_timeout_seconds), replayable=True)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def assess_margin(cloud_event) -> None:
    """Apply one event exactly once (both subscriptions deliver here), then publish margin events."""
    CONSUMER.handle(cloud_event)
