"""reconcile: on each `ops.reconcile.tick`, redrive dead letters, then find and repair drift between the domains."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.reconcile.service import Reconciler
from shared.reconcile.settings import ReconcileSettings
from shared.relay.settings import ChainSettings
from shared.risk.settings import RiskSettings
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[ChainSettings, RiskSettings, ReconcileSettings])
RECONCILER = Reconciler(SETTINGS)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def reconcile(cloud_event) -> None:
    """The tick's content is irrelevant; a run that fails (chain or database away) is redelivered."""
    RECONCILER.run_tick()
