"""rescreen: rescreen one shard of users (a range of rescreen keys) against the newest sanctions list."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.compliance import SCHEMA
from shared.compliance.service import ComplianceService
from shared.compliance.settings import ComplianceSettings
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.messaging.consumer import Consumer
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[ComplianceSettings])
CONSUMER = Consumer("rescreen", SCHEMA, SETTINGS, ComplianceService(SETTINGS.part(ComplianceSettings)).rescreen_shard)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def rescreen(cloud_event) -> None:
    """Rescreen every user of the shard still behind the newest snapshot, once, then publish what changed."""
    CONSUMER.handle(cloud_event)
