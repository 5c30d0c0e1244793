"""A delivery's drains get what the function's timeout leaves of its work, on PostgreSQL through the real
consumer: a 120 s function's after-commit step may drain until 70 s after the handler started (40 s of a
database outage it may have waited out first and 10 s to answer in are kept), a function with no known
timeout for outbox.DRAIN_SECONDS after its handler."""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy
from cloudevents.http import CloudEvent

from shared.messaging import outbox
from shared.messaging.consumer import Consumer
from shared.settings import DatabaseSettings, Settings
from shared.stack.layout import DATABASE, PROJECT_ID
from tests.support.events import body, unique_escrow_created

CONSUMER = "deadline-test"


def _delivery() -> CloudEvent:
    message = {"data": base64.b64encode(body(unique_escrow_created())).decode(), "messageId": uuid.uuid4().hex,
               "attributes": {}, "publishTime": datetime.now(UTC).isoformat()}
    return CloudEvent({"type": "google.cloud.pubsub.topic.v1.messagePublished", "source": "test",
                       "id": message["messageId"]}, {"message": message})


@pytest.fixture
def consumer_with_timeout(database, owner_engine):
    def build(timeout: int | None) -> tuple[Consumer, list]:
        settings = Settings(service="assess-margin", project_id=PROJECT_ID, publish_timeout_seconds=30,
                            function_timeout_seconds=timeout,
                            database=DatabaseSettings(name=DATABASE, user="fn_assess_margin", host="127.0.0.1",
                                                      port=database.postgres_port, instance_connection_name=None))
        given: list = []
        return Consumer(CONSUMER, "risk", settings, lambda conn, envelope: [],
                        lambda engine, envelope, drain_until: given.append(drain_until)), given

    yield build
    with owner_engine.begin() as conn:
        conn.execute(sqlalchemy.text("DELETE FROM risk.inbox WHERE consumer = :c"), {"c": CONSUMER})


@pytest.mark.parametrize("timeout, drains_for", [(120, 70.0), (60, outbox.DRAIN_SECONDS),
                                                 (None, outbox.DRAIN_SECONDS)])
def test_the_after_commit_step_drains_until_the_work_of_the_delivery_must_end(consumer_with_timeout, timeout,
                                                                           drains_for):
    consumer, given = consumer_with_timeout(timeout)
    started = time.monotonic()
    assert consumer.handle(_delivery()) == "applied"
    finished = time.monotonic()
    [drain_until] = given
    # Measured from the handler's start (120 s), or from the drain's start at the least: within the call.
    assert started + drains_for - 0.01 <= drain_until <= finished + drains_for + 0.01
