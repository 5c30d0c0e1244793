"""refresh-sanctions: on each `compliance.lists.tick`, load OFAC's lists if they changed and rescreen users."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.compliance.refresh import SanctionsRefresher
from shared.compliance.settings import ComplianceSettings, SanctionsSourceSettings
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[ComplianceSettings, SanctionsSourceSettings])
REFRESHER = SanctionsRefresher(SETTINGS)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def refresh_sanctions(cloud_event) -> None:
    """The tick's content is irrelevant; an unreachable source raises so the tick is redelivered."""
    REFRESHER.run_tick()
