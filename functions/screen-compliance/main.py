"""screen-compliance: screen each registered user (KYC, sanctions, AML); apply reviewers' decisions."""

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
CONSUMER = Consumer("screen-compliance", SCHEMA, SETTINGS, ComplianceService(SETTINGS.part(ComplianceSettings)).handle)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def screen_compliance(cloud_event) -> None:
    """Apply one registration or review exactly once, then publish the result."""
    CONSUMER.handle(cloud_event)
