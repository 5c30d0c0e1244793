"""notify: margin events to email, SMS and signed webhooks, one tracked delivery per channel."""

import functions_framework

from shared import startup  # first of the platform's modules: see shared/startup.py
from shared.db import rides_out_database_outages
from shared.logs import configure_logging
from shared.messaging.consumer import Consumer
from shared.notify import SCHEMA
from shared.notify.service import Notifier
from shared.notify.settings import NotifySettings
from shared.settings import Settings

configure_logging()
SETTINGS = Settings.from_env(parts=[NotifySettings])
NOTIFIER = Notifier(SETTINGS.part(NotifySettings))
CONSUMER = Consumer("notify", SCHEMA, SETTINGS, NOTIFIER.handle, after_commit=NOTIFIER.send_pending,
                    replayable=True)
startup.loaded()


@functions_framework.cloud_event
@rides_out_database_outages
def notify(cloud_event) -> None:
    """Record the event and plan its deliveries exactly once, then attempt what is still pending."""
    CONSUMER.handle(cloud_event)
